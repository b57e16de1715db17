"""The one exception module. Every error a user can cause is a RepackError; the CLI prints its
message as one line and exits non-zero. Messages name the file, the tensor and the problem."""

from __future__ import annotations


class RepackError(Exception):
    """Base class: a problem with the input, the request or the environment, never a bug."""

    exit_code = 2


class InputError(RepackError):
    """A source checkpoint is missing, malformed, truncated or contradicts itself."""


class FormatError(RepackError):
    """An unknown format or variant, or a checkpoint no registered format can read."""


class UnsupportedError(RepackError):
    """The target format cannot hold this tensor at all (bits, shapes, layout)."""


class LossyConversionError(RepackError):
    """The target can hold the model only approximately and --allow-lossy was not given."""

    exit_code = 3

    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


class OutputError(RepackError):
    """The output folder exists (without --force) or cannot be written."""
