"""The neural-texture model (bank kind neural_texture): sampling, bank file, renderer, folding into plain MLPs."""

import numpy as np
import pytest
import torch

from backend.bank import SHARED_SLOT_KEY, load_bank, make_bank, make_meta, pack, random_bank, save_bank
from backend.errors import BankError
from backend.features import N_FEATURES
from backend.neural_texture import (NeuralTextureRenderer, create, folded_rows, multiply_adds, sample_texture)
from backend.renderers.torch_renderer import TorchRenderer
from backend.synthetic import sphere_gbuffer

CHANNELS, RESOLUTION = 4, 8


def texture_bank(seed: int = 0, texture=None, layers=(N_FEATURES + CHANNELS, 16, 16, 3)):
    rng = np.random.default_rng(seed)
    plain = random_bank(seed, [], [N_FEATURES, *layers[1:]], fallback="shared_network")
    wb = [(rng.normal(0, np.sqrt(2.0 / i), (i, o)).astype(np.float32), rng.normal(0, 0.1, o).astype(np.float32))
          for i, o in zip(layers[:-1], layers[1:])]
    wb[-1] = (wb[-1][0] * 0.3, wb[-1][1] - 1.0)
    if texture is None:
        texture = rng.normal(0, 1, (CHANNELS, RESOLUTION, RESOLUTION)).astype(np.float32)
    meta = make_meta(list(layers), [SHARED_SLOT_KEY], [1], fallback="shared_network", shared_slot=0,
                     kind="neural_texture", texture={"channels": CHANNELS, "resolution": RESOLUTION})
    return make_bank(pack(wb)[None], plain.feature_mean, plain.feature_std, meta, texture)


def test_sampling_hits_texel_centres_and_clamps_at_the_border():
    texture = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    centre = torch.tensor([[(2 + 0.5) / 4, (1 + 0.5) / 4]])  # column 2, row 1
    assert torch.allclose(sample_texture(texture, centre), texture[:, 1, 2][None])
    corner = torch.tensor([[-0.3, 1.2]])  # left of column 0, below the last row
    assert torch.allclose(sample_texture(texture, corner), texture[:, 3, 0][None])
    between = torch.tensor([[0.5, (0 + 0.5) / 4]])  # halfway between columns 1 and 2 on row 0
    assert torch.allclose(sample_texture(texture, between), (texture[:, 0, 1] + texture[:, 0, 2])[None] / 2)


def test_bank_round_trip_and_refusals(tmp_path):
    bank = texture_bank()
    path = save_bank(bank, tmp_path / "nt.nfbank")
    loaded = load_bank(path)
    assert loaded.kind == "neural_texture" and loaded.meta["version"] == 3
    assert np.array_equal(loaded.texture, bank.texture) and np.array_equal(loaded.slots, bank.slots)
    plain = random_bank(0, [5, 9], [N_FEATURES, 8, 3])
    assert load_bank(save_bank(plain, tmp_path / "plain.nfbank")).meta["version"] == 2  # other kinds unchanged
    no_texture = make_bank(bank.slots, bank.feature_mean, bank.feature_std, bank.meta)
    with pytest.raises(BankError, match="texture tensor"):
        save_bank(no_texture, tmp_path / "bad.nfbank")
    wrong = make_bank(bank.slots, bank.feature_mean, bank.feature_std, bank.meta, bank.texture[:, :4])
    with pytest.raises(BankError, match="texture tensor"):
        save_bank(wrong, tmp_path / "bad.nfbank")


def test_renderer_matches_a_direct_evaluation_and_folding_a_constant_texture_is_exact():
    g = sphere_gbuffer(48, 40, n_lights=2, seed=3)
    constant = np.broadcast_to(np.array([0.3, -1.0, 2.0, 0.5], dtype=np.float32)[:, None, None],
                               (CHANNELS, RESOLUTION, RESOLUTION)).copy()
    bank = texture_bank(1, texture=constant)
    frame = create(bank).render(g)
    assert isinstance(create(bank), NeuralTextureRenderer) and frame.shape == (48, 40, 4)
    assert np.all(np.isfinite(frame)) and frame[g.covered, :3].max() > 0
    # With a constant texture, the folded plain network is the same function: the torch renderer agrees.
    rows = folded_rows(bank, constant[:, 0, 0][None])
    meta = make_meta([N_FEATURES, 16, 16, 3], [SHARED_SLOT_KEY], [1], fallback="shared_network", shared_slot=0,
                     kind="single_network")
    folded = make_bank(rows, bank.feature_mean, bank.feature_std, meta)
    np.testing.assert_allclose(TorchRenderer(folded).render(g), frame, rtol=1e-4, atol=1e-6)


def test_multiply_adds():
    assert multiply_adds([23, 32, 32, 3]) == 23 * 32 + 32 * 32 + 32 * 3
    assert multiply_adds([31, 32, 32, 3], 8) == 31 * 32 + 32 * 32 + 32 * 3 + 32


@pytest.mark.slow
def test_neural_texture_teacher_labels_and_folds_into_the_students(suzanne_dataset, tmp_path):
    from backend.bank import companion_path
    from backend.bin_choice import CANDIDATES, MAX_UNSEEN_SHARE
    from backend.dataset import open_dataset
    from backend.evaluation import load_views
    from backend.learning_rates import FROM_SCRATCH_LR_SCALE, WARM_START_LR_SCALE
    from backend.report import unseen_share, write_report
    from backend.teacher_labels import teacher_path
    from backend.training import TrainConfig, train

    out = tmp_path / "bank.nfbank"
    fast = dict(data=str(suzanne_dataset), steps=20, eval_every=10, checkpoint_every=10, batch=32, widths=(16, 16),
                min_bucket_pixels=64, teacher_kind="neural_texture", texture_channels=4, texture_resolution=16)
    result = train(TrainConfig(out=str(out), **fast))
    teacher = load_bank(teacher_path(out))
    assert teacher.kind == "neural_texture" and teacher.layers == [N_FEATURES + 4, 16, 16, 3]
    assert teacher.texture.shape == (4, 16, 16) and np.abs(teacher.texture).max() > 0  # the texels learned
    lr = TrainConfig.lr
    assert teacher.provenance["learning_rate"] == pytest.approx(lr * FROM_SCRATCH_LR_SCALE["neural_texture"])
    bank = load_bank(result.bank_path)
    provenance = bank.provenance
    assert provenance["teacher_kind"] == "neural_texture" and provenance["warm_start_how"] == "fold"
    # bins "auto": the choice predicted, from the G-buffers alone, the keys that training gave a network.
    dataset = open_dataset(suzanne_dataset)
    chosen = provenance["bins_chosen"]
    assert chosen["bins"] == bank.bins == provenance["bins"]
    val_views = load_views(dataset, dataset.indices("val"))
    assert chosen["unseen_share"][str(bank.bins)] == pytest.approx(unseen_share(bank, val_views))
    assert all(chosen["unseen_share"][str(b)] > MAX_UNSEEN_SHARE for b in CANDIDATES if b > bank.bins)
    assert provenance["learning_rate"] == pytest.approx(lr * WARM_START_LR_SCALE["hash_bank"])
    assert provenance["teacher_pixels"] > 0
    # A baseline beside the bank shares its teacher (no second one is trained) and folds it too.
    baseline = companion_path(out, ".single_cost.nfbank")
    before = teacher_path(out).stat().st_mtime_ns
    train(TrainConfig(out=str(baseline), kind="single_cost", **fast))
    assert teacher_path(baseline) == teacher_path(out) and teacher_path(out).stat().st_mtime_ns == before
    assert load_bank(baseline).provenance["warm_start_how"] == "fold"
    assert load_bank(baseline).provenance["learning_rate"] == pytest.approx(lr * WARM_START_LR_SCALE["single_cost"])
    # --random-start: the teacher still labels the unlabelled views, but no network starts from it.
    random_start = train(TrainConfig(out=str(tmp_path / "random.nfbank"), warm_start=False, teacher=str(teacher_path(out)),
                                     **fast))
    provenance = load_bank(random_start.bank_path).provenance
    assert not provenance["warm_start"] and provenance["warm_start_how"] is None and provenance["teacher_pixels"] > 0
    assert provenance["learning_rate"] == pytest.approx(lr * FROM_SCRATCH_LR_SCALE["hash_bank"])
    metrics = write_report(out, suzanne_dataset, tmp_path / "report")
    assert metrics["models"]["teacher"]["kind"] == "neural_texture"
    assert metrics["models"]["teacher"]["multiply_adds_per_pixel_light"] == multiply_adds([27, 16, 16, 3], 4)
    assert metrics["models"]["teacher"]["texture_parameters"] == 4 * 16 * 16


def test_an_affine_texture_folds_exactly_over_a_bucket():
    """texture_fit + folded_rows reproduce the teacher wherever its texture is affine in UV."""
    from backend.network import forward
    from backend.bank import unpack
    from backend.neural_texture import texture_fit

    rng = np.random.default_rng(5)
    centres = (np.arange(RESOLUTION) + 0.5) / RESOLUTION
    v, u = np.meshgrid(centres, centres, indexing="ij")
    a, b, c = rng.normal(size=(3, CHANNELS, 1, 1)).astype(np.float32)
    bank = texture_bank(2, texture=(a + b * u + c * v).astype(np.float32))
    x = rng.normal(size=(500, N_FEATURES)).astype(np.float32)
    uv = rng.uniform(centres[0], centres[-1], size=(500, 2)).astype(np.float32)  # inside the texel centres
    x[:, :2] = (uv - bank.feature_mean[:2]) / bank.feature_std[:2]
    coefficients = texture_fit(bank.texture, torch.from_numpy(x[:, :2]), bank.feature_mean[:2],
                               bank.feature_std[:2], [0, 200], [200, 300])
    rows = folded_rows(bank, coefficients)
    teacher_in = torch.from_numpy(np.concatenate([x, sample_texture(torch.from_numpy(bank.texture),
                                                                     torch.from_numpy(uv)).numpy()], 1))
    expected = forward(unpack(torch.from_numpy(bank.slots[:1]), bank.layers), teacher_in[None], "exp")[0]
    for r, rows_of in enumerate((slice(0, 200), slice(200, 500))):
        student = unpack(torch.from_numpy(rows[r : r + 1]), [N_FEATURES, 16, 16, 3])
        got = forward(student, torch.from_numpy(x[rows_of])[None], "exp")[0]
        torch.testing.assert_close(got, expected[rows_of], rtol=1e-3, atol=1e-5)
