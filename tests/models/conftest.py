from collections.abc import Callable

import pytest

from suite.models import load_pipeline
from suite.models.architectures import ARCHITECTURES


@pytest.fixture(scope="session")
def tiny() -> Callable:
    """The tiny pipeline of a model (seed 7, its first task), built once per session."""
    built = {}

    def get(model: str):
        if model not in built:
            built[model] = load_pipeline(model, "tiny", task=ARCHITECTURES[model].tasks[0], seed=7)[0]
        return built[model]

    return get
