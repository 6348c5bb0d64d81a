"""sdsuite: benchmark Stable Diffusion pipelines on any hardware and audit images for SD watermarks."""

__version__ = "0.1.0"
