"""Atomic file writes: write beside the target under a temporary name, then rename over it.

A killed process leaves at most a stray `.NAME.*.tmp` file, never a target that reads as valid
but is half written (`os.replace` is atomic within one file system).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` on success and is removed on error.

    `suffix` keeps the extension for writers that pick the format from it (PIL, matplotlib, OpenEXR).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """open() for writing that lands on disk (fsync) under the final name only when complete."""
    with atomic_path(path) as tmp, open(tmp, mode) as stream:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as stream:
        stream.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as stream:
        stream.write(text)
