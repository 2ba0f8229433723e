"""Trace and shade one preview frame through the service and bring it back (no bpy: a worker thread).

The service traces the G-buffer (backend/tracer) from the mesh file the UI side wrote and the
dataset's baked albedo, then shades it. On the service's own machine everything travels as file
paths; to a service elsewhere (an SSH tunnel to a GPU box) the mesh and the albedo are uploaded
(each only when it changed) and the frame downloaded, as raw files, never JSON.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .service_client import ServiceClient

FRAME_NAME = "frame.npy"
_uploaded: dict[str, tuple[int, str]] = {}  # local path -> (mtime_ns, path on the service) of what was sent


@dataclass
class ShadedFrame:
    frame: np.ndarray  # [H, W, 4] float32, rows top to bottom
    renderer: str
    trace_s: float  # the service's tracer
    transfer_s: float  # everything but tracing and shading: requests, uploads, file reads and writes
    shading_s: float


def _on_service(client: ServiceClient, path: str) -> str:
    mtime = os.stat(path).st_mtime_ns
    known = _uploaded.get(path)
    if known is None or known[0] != mtime:
        _uploaded[path] = (mtime, client.upload(path, os.path.basename(path)))
    return _uploaded[path][1]


def trace_and_shade(client: ServiceClient, request: dict, work_dir: str) -> ShadedFrame:
    """`request`: the /preview body without `out` (bank, mesh, albedo, camera, lights, resolution, ...)."""
    local_frame = os.path.join(work_dir, FRAME_NAME)
    start = time.perf_counter()
    if client.shares_files:
        answer = client.preview({**request, "out": local_frame})
    else:
        answer = client.preview({**request, "mesh": _on_service(client, request["mesh"]),
                                 "albedo": _on_service(client, request["albedo"])})
        client.download(os.path.basename(answer["frame"]), local_frame)
    frame = np.load(local_frame)
    timings = answer["timings"]
    trace_s, shading_s = timings["trace_s"], timings["shading_s"]
    return ShadedFrame(frame, answer["renderer"], trace_s, time.perf_counter() - start - trace_s - shading_s, shading_s)
