"""Atomic file writes: every file audiomask writes appears complete or not at all."""

from __future__ import annotations

import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


_TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{8}(\.[^.]*)?")


def _create_temp(path: Path) -> Path:
    """Create an empty hidden sibling of ``path`` with the same suffix (umask permissions), so
    libraries that pick a format from the extension still do."""
    while True:
        tmp = path.with_name(f".{path.stem}.tmp-{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without error the
    temporary file is fsynced and renamed onto ``path``, otherwise it is removed and an
    existing ``path`` is left untouched. Parent folders are created.

    >>> with atomic_target("out/model.safetensors") as tmp:
    ...     save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    mode = os.stat(tmp).st_mode & 0o777  # what the umask allows; writers that replace tmp lose it
    try:
        yield tmp
        os.chmod(tmp, mode)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_target`)."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_target` left in ``folder`` when a process
    was killed while writing; returns them. Call it only where no other writer is active."""
    stale = [p for p in Path(folder).glob(".*.tmp-*") if _TEMP_NAME.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
