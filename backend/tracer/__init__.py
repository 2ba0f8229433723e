"""The G-buffer ray tracer (the talk's RT step): a scene file in, canonical G-buffers out.

`load_scene(DIR)` reads what Generate Dataset exported (docs/formats/scene.md);
`get_tracer(scene)` builds a tracer whose `trace(camera, lights, resolution)` returns a
backend.gbuffer.GBuffer. Embree on the CPU is the one implementation today; a GPU tracer
(e.g. NVIDIA Warp's mesh queries) would be another class with the same `trace`.
"""

from backend.tracer.embree_tracer import DEFAULT_SHADOW_RAYS, TRACER_VERSION, EmbreeTracer
from backend.tracer.scene_file import SceneFileError, TracedScene, load_albedo, load_mesh, load_parts, load_scene

TRACERS = {"embree": EmbreeTracer}


def get_tracer(scene: TracedScene, name: str = "embree", shadow_rays: int = DEFAULT_SHADOW_RAYS):
    if name not in TRACERS:
        raise ValueError(f"unknown tracer {name!r}; choose {', '.join(TRACERS)}")
    return TRACERS[name](scene, shadow_rays=shadow_rays)


__all__ = ["DEFAULT_SHADOW_RAYS", "TRACER_VERSION", "EmbreeTracer", "SceneFileError", "TracedScene", "get_tracer",
           "load_albedo", "load_mesh", "load_parts", "load_scene"]
