"""Errors that name the file or setting at fault, for messages a person can act on."""


class CheckpointError(RuntimeError):
    """A missing, corrupt or mismatched checkpoint file."""
