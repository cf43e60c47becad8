"""The exceptions cfexplain raises.

Every error the library raises on purpose derives from :class:`CfexplainError`, so one ``except``
clause catches them all. The hierarchy is small on purpose::

    CfexplainError
    ├── CheckpointError                 a model file cannot be used
    │   ├── CheckpointNotFoundError     missing or unreadable path (also a FileNotFoundError)
    │   ├── CorruptCheckpointError      truncated or damaged file
    │   ├── UnknownCheckpointFormatError  not a format cfexplain reads
    │   ├── UnsafeCheckpointError       a pickle asks for code cfexplain will not run
    │   ├── UnsupportedModelError       a readable file holding a network cfexplain does not support
    │   └── ModelFetchError             a zoo model's file cannot be fetched or verified
    ├── InputError                      bad arguments or data (also a ValueError)
    │   ├── ShapeError                  a tensor of the wrong shape for what it is used as
    │   └── PhotoError                  a photo cannot be read, or holds no usable face (named per file)
    └── ModelOutputError                a user model returns something unusable (also a ValueError)

Messages say what was expected, what was found and, where there is one, what to do.
"""

from __future__ import annotations

__all__ = [
    "CfexplainError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "UnknownCheckpointFormatError",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "ModelFetchError",
    "InputError",
    "ShapeError",
    "PhotoError",
    "ModelOutputError",
    "describe_exception",
]


class CfexplainError(Exception):
    """Base class of every error raised by cfexplain."""


class CheckpointError(CfexplainError):
    """A model file cannot be used."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist, is not a file, or cannot be read."""


class CorruptCheckpointError(CheckpointError):
    """The file has a known format but is truncated or damaged."""


class UnknownCheckpointFormatError(CheckpointError):
    """The file is not in any format cfexplain reads."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle refers to a global (a function or class) outside cfexplain's allow-list.

    Loading such a file could run arbitrary code, so it is refused before anything is called.
    """


class UnsupportedModelError(CheckpointError):
    """The file is readable but holds a network cfexplain does not support (e.g. a conditional generator)."""


class ModelFetchError(CheckpointError):
    """A zoo model's file cannot be fetched (no network, no pip) or fails verification.

    The message names the file, where it comes from, and how to supply it by hand.
    """


class InputError(CfexplainError, ValueError):
    """An argument or a tensor passed to cfexplain is not valid."""


class ShapeError(InputError):
    """A tensor has the wrong shape for what it is used as."""


class PhotoError(InputError):
    """A photo cannot be read, or has no face, several faces, or too small a face to align.

    Attributes:
        source: the photo's name (its file, or ``"images[i]"`` for a tensor).
        reason: ``"unreadable"``, ``"no face"``, ``"several faces"`` or ``"face too small"``.
    """

    def __init__(self, source: str, reason: str, detail: str) -> None:
        super().__init__(f"{source}: {reason}: {detail}")
        self.source, self.reason = source, reason


class ModelOutputError(CfexplainError, ValueError):
    """A user model returned something unusable: the wrong shape, NaN or infinite values."""


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (``"TypeName: no detail"`` without one): how an
    unforeseen exception from a library under cfexplain is quoted inside a cfexplain error."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text.strip() else 'no detail'}"
