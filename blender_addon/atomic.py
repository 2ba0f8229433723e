"""Atomic file writes for the add-on (standard library only; the backend has backend/atomic.py).

Write `PATH.partial`, then rename it over PATH (`os.replace` is atomic within one file system), so
a killed process never leaves a PATH that reads as valid but is half written. A resumed dataset
job deletes stray `.partial` files (dataset_job).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_open(path: str, mode: str = "w", durable: bool = False) -> Iterator[IO]:
    """open() for writing whose file appears under `path` only when complete; `durable` fsyncs it first."""
    partial = path + PARTIAL_SUFFIX
    with open(partial, mode) as stream:
        yield stream
        if durable:
            stream.flush()
            os.fsync(stream.fileno())
    os.replace(partial, path)


def write_json_atomically(path: str, data, durable: bool = False) -> None:
    with atomic_open(path, durable=durable) as stream:
        json.dump(data, stream, indent=1)
