"""Trace the G-buffer of a dataset sample record (its camera, lights and resolution) into its file.

Generate Dataset calls `SampleTracer` for every sample, labelled or not (on a cluster, the driver
does, as it commits each sample), so a dataset's G-buffers all come from the one recipe in
embree_tracer.py. The file records the tracer that wrote it (`neuralFaceTracer` in its header).
"""

from __future__ import annotations

import time
from pathlib import Path

from backend.dataset import lights_array, write_gbuffer_exr
from backend.gbuffer import GBuffer
from backend.tracer import DEFAULT_SHADOW_RAYS, TRACER_VERSION, get_tracer, load_scene

TRACER_ATTRIBUTE = "neuralFaceTracer"


def trace_record(tracer, record: dict, source: str = "<traced>") -> GBuffer:
    """The G-buffer of a sample record ("camera", "lights", "resolution": dataset.md)."""
    return tracer.trace(record["camera"], lights_array(record["lights"], source), tuple(record["resolution"]), source=source)


class SampleTracer:
    """`tracer(record)`: write record["gbuffer"] under `dataset_dir`; returns the seconds it took.

    The scene is read and its ray-tracing structure built on the first call."""

    def __init__(self, dataset_dir: str | Path, shadow_rays: int = DEFAULT_SHADOW_RAYS, name: str = "embree"):
        self.dataset_dir = Path(dataset_dir)
        self.shadow_rays, self.name = shadow_rays, name
        self._tracer = None

    @property
    def tracer(self):
        if self._tracer is None:
            self._tracer = get_tracer(load_scene(self.dataset_dir), self.name, self.shadow_rays)
        return self._tracer

    def __call__(self, record: dict) -> float:
        start = time.perf_counter()
        path = self.dataset_dir / record["gbuffer"]
        gbuffer = trace_record(self.tracer, record, source=str(path))
        attributes = {TRACER_ATTRIBUTE: f"{self.name} {TRACER_VERSION}, {self.shadow_rays} shadow rays"}
        write_gbuffer_exr(path, gbuffer, record, attributes)
        return time.perf_counter() - start


__all__ = ["SampleTracer", "trace_record"]
