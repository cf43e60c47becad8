"""Writing files so that an interrupted run never leaves a half-written one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import CorruptCheckpointError, InputError

__all__ = ["atomic_write", "read_versioned_json", "sha256_file", "reading_document"]


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``target``, then rename it into place.

    The file gets ordinary permissions (0644); the folder is created if needed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_MAX_INT_DIGITS = 40


def _bounded_int(text: str) -> int:
    """A JSON integer, refused beyond what any saved artefact holds (a 5 000-digit number is damage)."""
    if len(text) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def read_versioned_json(file: Path, version: int, what: str) -> dict[str, Any]:
    """The JSON object in ``file``, whose ``format_version`` must be ``version``; anything else
    (unreadable, not JSON, another version) raises :class:`CorruptCheckpointError` naming ``what``."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"), parse_int=_bounded_int)
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptCheckpointError(f"{file}: not a readable {what} ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})") from None
    found = data.get("format_version") if isinstance(data, dict) else None
    if found != version:
        raise CorruptCheckpointError(f"{file}: {what} format {found!r}, this cfexplain reads version {version}")
    return data


@contextmanager
def reading_document(where: object, what: str) -> Iterator[None]:
    """Build an object from a loaded document inside this block: an entry that is missing or of
    the wrong type (a document edited and resealed by hand, or from a broken writer) becomes a
    :class:`CorruptCheckpointError` naming ``where`` instead of a raw ``KeyError``/``TypeError``."""
    try:
        yield
    except InputError as exc:  # a value the object refuses (a NaN basis, a mis-shaped tensor)
        raise CorruptCheckpointError(f"{where}: damaged {what}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise CorruptCheckpointError(f"{where}: damaged {what}: an entry is missing or of the wrong type "
                                     f"({type(exc).__name__}: {str(exc)[:200]})") from None
