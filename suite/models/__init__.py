"""Stable Diffusion architectures (sd-v1, sd-v2.1, sd-x4-upscaler) and the weights to run them with."""

from suite.models.architectures import ARCHITECTURES
from suite.models.errors import WeightsError
from suite.models.sources import WeightInfo, load_pipeline

__all__ = ["ARCHITECTURES", "WeightInfo", "WeightsError", "load_pipeline"]
