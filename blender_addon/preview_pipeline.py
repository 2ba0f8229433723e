"""Shade a G-buffer file through the service and bring the frame back (no bpy: runs in a worker thread).

On the service's own machine the frame travels as a file path; to a service elsewhere (an SSH tunnel
to a GPU box) the G-buffer is uploaded and the frame downloaded, as raw files either way, never JSON.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .gbuffer import sidecar_path
from .service_client import ServiceClient

FRAME_NAME = "frame.npy"


@dataclass
class ShadedFrame:
    frame: np.ndarray  # [H, W, 4] float32, rows top to bottom
    renderer: str
    transfer_s: float  # everything but the renderer itself: requests, file reads and writes
    shading_s: float


def shade(client: ServiceClient, bank: str, gbuffer_exr: str, renderer: str, work_dir: str) -> ShadedFrame:
    local_frame = os.path.join(work_dir, FRAME_NAME)
    start = time.perf_counter()
    if client.shares_files:
        answer = client.render(bank, gbuffer_exr, renderer, out=local_frame)
    else:
        remote_exr = client.upload(gbuffer_exr, os.path.basename(gbuffer_exr))
        client.upload(sidecar_path(gbuffer_exr), os.path.basename(sidecar_path(gbuffer_exr)))
        answer = client.render(bank, remote_exr, renderer)
        client.download(os.path.basename(answer["frame"]), local_frame)
    frame = np.load(local_frame)
    shading_s = answer["timings"]["shading_s"]
    return ShadedFrame(frame, answer["renderer"], time.perf_counter() - start - shading_s, shading_s)
