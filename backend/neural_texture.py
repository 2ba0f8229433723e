"""The neural-texture model: a learned UV feature grid in front of one per-pixel MLP (bank kind neural_texture).

What a user of Deferred Neural Rendering or of neural materials would pick instead of a bank of
specialists: a texture of C learned channels at R x R texels is sampled bilinearly at the pixel's
UV and concatenated to the 23 features (docs/formats/gbuffer.md section 2), and one MLP
`[23 + C, ..., 3]` shades it. Per pixel and light this costs the MLP's multiply-adds plus 4 C for
the bilinear lookup. Training uses it as a teacher (`train --teacher-kind neural_texture`) and as
a baseline; only this module shades it (the tile kernel has no texture input).

Sampling (the definition every implementation must follow): texel (i, j) (row i, column j) has
its centre at u = (j + 0.5) / R, v = (i + 0.5) / R, with u and v as stored in the G-buffer;
coordinates outside the centres clamp to the border texels (`grid_sample`, align_corners=False,
padding "border").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.bank import Bank, unpack
from backend.features import N_FEATURES, covered_shading_inputs
from backend.gbuffer import GBuffer
from backend.model_kinds import NEURAL_TEXTURE
from backend.network import forward
from backend.stacked_mlp import ParameterSnapshots, StackedMLP

TEXTURE_CHANNELS = 8
TEXTURE_RESOLUTION = 64


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture values [..., C] at uv [..., 2] (u, v as stored); texture is [C, R, R]."""
    lead = uv.shape[:-1]
    grid = (uv.reshape(1, 1, -1, 2) * 2 - 1).to(texture.dtype)
    out = torch.nn.functional.grid_sample(texture[None], grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)  # [1, C, 1, N]
    return out[0, :, 0].T.reshape(*lead, texture.shape[0])


def multiply_adds(layers: list[int], channels: int = 0) -> int:
    """Multiply-adds per pixel and light: the MLP's, plus 4 per channel for a bilinear texture lookup."""
    return sum(i * o for i, o in zip(layers[:-1], layers[1:])) + 4 * channels


class NeuralTextureModel(ParameterSnapshots):
    """One MLP [23 + C, ..., 3] and its texture, with StackedMLP's training interface (R = 1).

    Inputs are the normalised features x_hat [1, M, 23]; the texture is sampled at the raw UV
    (x_hat * std + mean of features 0 and 1).
    """

    def __init__(self, layers: list[int], channels: int, resolution: int, output_activation: str,
                 initial_output: np.ndarray, generator: torch.Generator, device, feature_mean, feature_std):
        self.layers, self.channels, self.resolution = list(layers), channels, resolution
        self.output_activation = output_activation
        self.mlp = StackedMLP(1, layers, output_activation, initial_output, generator, device)
        self.texture = torch.zeros(channels, resolution, resolution, device=device).requires_grad_()
        self.params = [*self.mlp.params, self.texture]
        self.uv_mean = torch.as_tensor(np.asarray(feature_mean[:2], dtype=np.float32), device=device)
        self.uv_std = torch.as_tensor(np.asarray(feature_std[:2], dtype=np.float32), device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        uv = x[..., :2] * self.uv_std + self.uv_mean
        return self.mlp(torch.cat([x, sample_texture(self.texture, uv)], dim=-1))

    def slot_rows(self) -> np.ndarray:
        return self.mlp.slot_rows()

    def texture_array(self) -> np.ndarray:
        return self.texture.detach().cpu().numpy().astype(np.float32)



def folded_rows(teacher: Bank, coefficients: np.ndarray) -> np.ndarray:
    """Rows [R, P] of plain MLPs [23, h..., 3] made from a neural-texture teacher [23 + C, h..., 3].

    Network r is the teacher with its texture replaced by an affine function of the normalised UV
    inputs: `texture ~ c0 + c1 * u_hat + c2 * v_hat` with coefficients[r] = (c0, c1, c2), each [C]
    (u_hat, v_hat are features 0 and 1 after normalisation). The first layer keeps the 23 feature
    rows; the u and v rows gain `c1 @ W_texture` and `c2 @ W_texture` and the bias `c0 @ W_texture`.
    Fitted over a bucket's own pixels (Trainer.texture_fit), this is the teacher over the bucket's
    patch of UV to first order, so a specialist starts from the teacher's answer for its region,
    not from the average of the whole face. coefficients [R, C] (no slopes) holds the texture constant.
    """
    weights = unpack(np.asarray(teacher.slots[0], dtype=np.float32), teacher.layers)
    (w1, b1), rest = weights[0], weights[1:]
    coefficients = np.asarray(coefficients, dtype=np.float32)
    if coefficients.ndim == 2:
        coefficients = np.concatenate([coefficients[:, None], np.zeros_like(coefficients[:, None].repeat(2, 1))], 1)
    w_texture = w1[N_FEATURES:]
    rows = []
    for c0, c1, c2 in coefficients:
        w = w1[:N_FEATURES].copy()
        w[0] += c1 @ w_texture
        w[1] += c2 @ w_texture
        layers = [(w, b1 + c0 @ w_texture), *rest]
        rows.append(np.concatenate([np.concatenate([wi.reshape(-1), bi]) for wi, bi in layers]))
    return np.stack(rows)


def texture_fit(texture: np.ndarray, uv_hat: torch.Tensor, uv_mean, uv_std, start, count,
                affine: bool = True) -> np.ndarray:
    """[R, 3, C]: least-squares `texture(uv) ~ c0 + c1 u_hat + c2 v_hat` over rows start[r]:start[r]+count[r].

    uv_hat [N, 2] are the normalised u, v of the training pixels (sorted by bucket). With
    affine=False the slopes are 0 and c0 is the mean.
    """
    texture = torch.from_numpy(np.asarray(texture, dtype=np.float32))
    mean, std = torch.as_tensor(np.asarray(uv_mean, dtype=np.float32)), torch.as_tensor(np.asarray(uv_std, dtype=np.float32))
    values = torch.cat([sample_texture(texture, chunk * std + mean) for chunk in torch.split(uv_hat, 1 << 18)])
    out = []
    for s, n in zip(np.asarray(start).tolist(), np.asarray(count).tolist()):
        t = values[s : s + n].double()
        x = torch.cat([torch.ones(n, 1, dtype=torch.float64), uv_hat[s : s + n].double()], 1)
        if affine:
            gram = x.T @ x + 1e-6 * n * torch.eye(3, dtype=torch.float64)
            beta = torch.linalg.solve(gram, x.T @ t)
        else:
            beta = torch.zeros(3, t.shape[1], dtype=torch.float64)
            beta[0] = t.mean(0)
        out.append(beta.float().numpy())
    return np.stack(out)


class NeuralTextureRenderer:
    """Shades a neural_texture bank (the torch renderer's output contract: [H, W, 4])."""

    name = NEURAL_TEXTURE

    def __init__(self, bank: Bank, device="cpu"):
        if bank.kind != NEURAL_TEXTURE:
            raise ValueError(f"NeuralTextureRenderer shades neural_texture banks, not {bank.kind}")
        self.bank = bank
        self.device = torch.device(device)
        slot = torch.from_numpy(np.asarray(bank.slots[:1], dtype=np.float32)).to(self.device)
        self.weights = unpack(slot, bank.layers)  # [(W [1,in,out], b [1,out]), ...]
        self.texture = torch.from_numpy(np.asarray(bank.texture, dtype=np.float32)).to(self.device)
        self.mean = torch.from_numpy(bank.feature_mean).to(self.device)
        self.std = torch.from_numpy(bank.feature_std).to(self.device)

    def render(self, gbuffer: GBuffer) -> np.ndarray:
        return self.shade(self.prepare(gbuffer))

    @torch.no_grad()
    def prepare(self, gbuffer: GBuffer) -> "PreparedTextureFrame":
        """The frame's weight- and texture-independent work (see TorchRenderer.prepare)."""
        features, factor = covered_shading_inputs(gbuffer, self.bank.filter_radii, self.device)  # [N,L,F], [N,L,3]
        raw = features.transpose(0, 1)  # [L, N, F]
        return PreparedTextureFrame(gbuffer, raw[0, :, :2].clone(), (raw - self.mean) / self.std,
                                    factor.transpose(0, 1).contiguous())

    @torch.no_grad()
    def shade(self, prepared: "PreparedTextureFrame") -> np.ndarray:
        gbuffer, x_hat = prepared.gbuffer, prepared.x_hat
        texels = sample_texture(self.texture, prepared.uv)  # [N, C]: u, v are the same for every light
        n_lights, n, _ = x_hat.shape
        x = torch.cat([x_hat, texels.expand(n_lights, n, -1)], dim=-1)
        out = forward(self.weights, x.reshape(1, n_lights * n, -1), self.bank.output_activation)
        radiance = (out.view(n_lights, n, 3) * prepared.factor).sum(0).cpu().numpy()
        frame = np.zeros((gbuffer.height, gbuffer.width, 4), dtype=np.float32)
        if gbuffer.background is not None:
            frame[..., :3] = gbuffer.background.transpose(1, 2, 0)
        frame[gbuffer.covered, :3] = radiance
        frame[gbuffer.covered, 3] = 1.0
        return frame


@dataclass
class PreparedTextureFrame:
    gbuffer: GBuffer
    uv: torch.Tensor  # [N, 2] raw u, v of the covered pixels
    x_hat: torch.Tensor  # [L, N, F] normalised features
    factor: torch.Tensor  # [L, N, 3]


def create(bank: Bank, device="cpu"):
    """The renderer training and the report shade `bank` with: this module's for neural_texture, else torch."""
    if bank.kind == NEURAL_TEXTURE:
        return NeuralTextureRenderer(bank, device=device)
    from backend.renderers.torch_renderer import create as torch_create

    return torch_create(bank, device=device)
