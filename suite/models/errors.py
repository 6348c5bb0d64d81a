"""The one error every weight source raises, so callers handle bad weights in one place."""


class WeightsError(ValueError):
    """Weights that cannot be used as asked; the message names the file and what was expected."""
