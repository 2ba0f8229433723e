"""Renderers: twin implementations of docs/formats/gbuffer.md.

Every renderer has `name` and `render(gbuffer) -> np.ndarray [H, W, 4] float32` (linear RGB, alpha =
coverage, uncovered pixels show the background). `get_renderer` imports only the one asked for.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from backend.errors import UserError
from backend.gbuffer import GBuffer
from backend.model_kinds import NEURAL_TEXTURE

RENDERERS = {
    "torch": "backend.renderers.torch_renderer",
    "emulated": "backend.renderers.emulated_renderer",
    "pycuda": "backend.renderers.pycuda_renderer",
}


class Renderer(Protocol):
    name: str

    def render(self, gbuffer: GBuffer) -> np.ndarray: ...


def get_renderer(name: str, bank, **options) -> Renderer:
    """`name` is a key of RENDERERS or "auto"; each module exposes `create(bank, **options)`."""
    if getattr(bank, "kind", None) == NEURAL_TEXTURE:  # a texture input: only its own torch shader has one
        if name not in ("torch", "auto"):
            raise UserError(f"a neural_texture bank is shaded by the torch renderer only, not {name!r}")
        from backend.neural_texture import create

        return create(bank, device=options.get("device", "cpu"))
    if name == "auto":
        from backend.renderers.auto import choose

        name, reason = choose()
        print(f"renderer: {name} ({reason})")
    if name not in RENDERERS:
        raise UserError(f"unknown renderer {name!r}; choose one of {', '.join([*RENDERERS, 'auto'])}")
    return importlib.import_module(RENDERERS[name]).create(bank, **options)
