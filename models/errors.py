"""The exception raised for unreadable, unrecognised or non-matching checkpoints."""

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint could not be read, recognised, or loaded strictly. The message names the file and the problem."""
