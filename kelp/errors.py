"""Errors shared by several stages."""

__all__ = ["StaleInputError"]


class StaleInputError(ValueError):
    """Inputs that do not belong together; the message names the command to rerun."""
