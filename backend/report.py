"""The quality report: a bank (and its two baselines) against the dataset's Cycles frames.

`write_report` renders every validation and test view with each model, scores them
(backend.metrics: PSNR, SSIM, FLIP on face pixels), and writes `index.html`, its PNGs and
`metrics.json` into one folder: per test view the G-buffer, neural frame, Cycles frame and FLIP
error map; the tile keys; bucket sizes; the share of tiles with unseen keys; the tile-seam ratio
(squared error on tile-border pixels over squared error inside tiles, and the error of the step
between neighbours across tile borders over within tiles; 1 means no seams); and the
neural renderer's time per frame against Cycles' recorded time at the same resolution.
`should_stop` (the service's cancel) is asked between views and stages.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backend.bank import Bank, companion_path, load_bank
from backend.dataset import open_dataset
from backend.errors import DatasetError
from backend.evaluation import View, evaluations_per_pixel, load_views
from backend.hashing import gbuffer_tile_keys
from backend.metrics import flip_map, paired_gain_interval, psnr_from_mse, ssim, to_display
from backend.model_kinds import (BASELINE_KINDS, DESCRIPTIONS, HASH_BANK, NEURAL_TEXTURE, SINGLE_COST, SINGLE_NETWORK,
                                 TEACHER, companion_suffix)
from backend.neural_texture import create as create_texture_renderer, multiply_adds
from backend.renderers import get_renderer
from backend import report_figures as figures
from backend.teacher_labels import teacher_path

COMPANIONS = (*BASELINE_KINDS, NEURAL_TEXTURE, TEACHER)  # what `train` may have written beside a bank
TIMING_RUNS = 5


class ReportCancelled(Exception):
    """`should_stop` answered True: no report was written (an older one at that path is left as it was)."""


def model_name(bank: Bank) -> str:
    """What the report calls a bank: its model kind (a single network says which baseline it is)."""
    if bank.kind == SINGLE_NETWORK:
        return bank.provenance.get("model", SINGLE_NETWORK)
    return bank.kind


def find_models(bank_path: Path) -> dict[str, tuple[Path, Bank]]:
    """Path and bank of the bank (first), then of the baselines `train --baselines` and the teacher it
    trained wrote next to it."""
    bank = load_bank(bank_path)
    models = {model_name(bank): (bank_path, bank)}
    for name in COMPANIONS:
        path = teacher_path(bank_path) if name == TEACHER else companion_path(bank_path, companion_suffix(name))
        if name not in models and path.exists():
            models[name] = (path, load_bank(path))
    return models


def border_mask(h: int, w: int, tile_size: int) -> np.ndarray:
    """Pixels on the first or last row/column of their tile."""
    rows, cols = np.indices((h, w))
    return (rows % tile_size == 0) | (rows % tile_size == tile_size - 1) | \
           (cols % tile_size == 0) | (cols % tile_size == tile_size - 1)


def step_errors(error: np.ndarray, mask: np.ndarray, tile_size: int) -> dict[str, tuple[float, int]]:
    """Squared error of the step between neighbouring face pixels, summed over steps that cross a
    tile border ("across") and steps inside a tile ("within"), with their counts.

    A tile whose network is biased shifts all its pixels together: per-pixel error can be the same
    on its border as inside, but the step across its border is wrong. error is [H, W, 3].
    """
    sums = {"across": [0.0, 0], "within": [0.0, 0]}
    for axis in (0, 1):
        step = np.diff(error, axis=axis)
        both = np.logical_and(np.delete(mask, 0, axis), np.delete(mask, -1, axis))
        starts_tile = (np.arange(1, mask.shape[axis]) % tile_size) == 0
        across = np.expand_dims(starts_tile, 1 - axis) & both
        sq = (step.astype(np.float64) ** 2).mean(-1)
        for name, where in (("across", across), ("within", both & ~across)):
            sums[name][0] += float(sq[where].sum())
            sums[name][1] += int(where.sum())
    return {name: (total, count) for name, (total, count) in sums.items()}


class Scores:
    """Pooled and per-view metrics of one model on one split."""

    def __init__(self, tile_size: int):
        self.tile_size = tile_size
        self.squared = {"all": 0.0, "border": 0.0, "inside": 0.0, "across": 0.0, "within": 0.0}
        self.count = {"all": 0, "border": 0, "inside": 0, "across": 0, "within": 0}
        self.per_view: list[dict] = []

    def add(self, view: View, frame: np.ndarray, error_map: np.ndarray) -> dict:
        mask = view.mask
        error = to_display(frame) - to_display(view.ground_truth)
        sq = (error**2).mean(-1).astype(np.float64)
        border = border_mask(*mask.shape, self.tile_size)
        for name, where in (("all", mask), ("border", mask & border), ("inside", mask & ~border)):
            self.squared[name] += float(sq[where].sum())
            self.count[name] += int(where.sum())
        for name, (total, count) in step_errors(error, mask, self.tile_size).items():
            self.squared[name] += total
            self.count[name] += count
        scores = {"index": view.index, "psnr": psnr_from_mse(float(sq[mask].mean())),
                  "ssim": ssim(frame, view.ground_truth, mask), "flip": float(error_map[mask].mean())}
        self.per_view.append(scores)
        return scores

    def summary(self) -> dict:
        mse = {k: self.squared[k] / max(self.count[k], 1) for k in self.squared}
        return {
            "psnr": psnr_from_mse(mse["all"]),  # pooled over every face pixel of the split
            "psnr_mean_of_views": statistics.fmean(v["psnr"] for v in self.per_view),
            "ssim": statistics.fmean(v["ssim"] for v in self.per_view),
            "flip": statistics.fmean(v["flip"] for v in self.per_view),
            "seam_ratio": mse["border"] / mse["inside"] if mse["inside"] > 0 else None,
            "seam_step_ratio": mse["across"] / mse["within"] if mse["within"] > 0 else None,
            "views": self.per_view,
        }


def unseen_share(bank: Bank, views: list[View]) -> float:
    """Share of non-empty tiles whose key had no bucket of its own in training."""
    seen = unseen = 0
    for view in views:
        keys = gbuffer_tile_keys(view.gbuffer, bank.tile_size, bank.bins)
        keys = keys[keys > 0]
        known = bank.lut_seen[keys].astype(bool)
        seen, unseen = seen + int(known.sum()), unseen + int((~known).sum())
    return unseen / max(seen + unseen, 1)


def time_renderer(renderer, views: list[View], check: Callable[[], None] = lambda: None) -> float:
    """Median ms per frame over the views (after one warm-up render)."""
    renderer.render(views[0].gbuffer)
    times = []
    for _ in range(TIMING_RUNS):
        check()
        for view in views:
            start = time.perf_counter()
            renderer.render(view.gbuffer)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def write_report(bank_path, data_dir, out_dir, renderer: str = "torch", device: str = "cpu",
                 should_stop: Callable[[], bool] | None = None) -> dict:
    """Write the report folder (atomically: built beside it, then swapped in); returns metrics.json's dict.

    Raises ReportCancelled once `should_stop()` is true; it is asked between views and stages, and a
    last time before the swap, so a cancelled report never takes `out_dir`'s name.
    """
    bank_path, out_dir = Path(bank_path), Path(out_dir)

    def check() -> None:
        if should_stop is not None and should_stop():
            raise ReportCancelled(f"report {out_dir} cancelled")

    dataset = open_dataset(data_dir)
    splits = {s: dataset.indices(s) for s in ("val", "test")}
    if not splits["test"]:
        raise DatasetError(f"{dataset.root}: the dataset has no test samples to report on; generate more samples")
    found = find_models(bank_path)
    paths, models = {n: path for n, (path, _) in found.items()}, {n: bank for n, (_, bank) in found.items()}
    check()
    views = {s: load_views(dataset, ids) for s, ids in splits.items()}
    check()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", suffix=".tmp", dir=out_dir.parent))
    os.chmod(work, 0o755)  # mkdtemp's 0700 would make the finished report private
    old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
    try:
        metrics = _build(work, paths, dataset, models, views, renderer, device, check)
        (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (work / "index.html").write_text(_html(metrics))
        check()
        # Move the old report aside before the new one takes its name, so a kill never loses both.
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return metrics


def _options(name: str, device: str) -> dict:
    return {"device": device} if name == "torch" else {}


def _build(work: Path, paths: dict[str, Path], dataset, models: dict[str, Bank], views: dict, renderer_name: str,
           device: str, check: Callable[[], None]) -> dict:
    primary = next(iter(models))  # the bank the report is about; the others are its baselines
    bank, bank_path, divided = models[primary], paths[primary], primary == HASH_BANK
    results: dict[str, dict] = {}
    pictures: list[dict] = []
    renderers = {}
    for name, model in models.items():
        if model.kind == NEURAL_TEXTURE:  # only backend.neural_texture shades it (no tile kernel)
            renderer = renderers[name] = create_texture_renderer(model, device)
        else:
            renderer = renderers[name] = get_renderer(renderer_name, model, **_options(renderer_name, device))
        texture_size = 0 if model.texture is None else int(model.texture.size)
        channels = 0 if model.texture is None else int(model.texture.shape[0])
        results[name] = {"bank": str(paths[name]), "kind": model.kind, "slots": model.n_slots,
                         "layers": model.layers, "parameters": int(model.slots.size) + texture_size,
                         "texture_parameters": texture_size,
                         "multiply_adds_per_pixel_light": multiply_adds(model.layers, channels),
                         "bytes": int(model.slots.nbytes), "provenance": model.provenance}
        # A border blend runs a second network on some edge pixels: the cost a pixel really pays.
        evaluations = evaluations_per_pixel(model, views["test"]) if model.border_blend else 1.0
        results[name]["network_evaluations_per_pixel"] = evaluations
        results[name]["multiply_adds_per_pixel_light_effective"] = \
            round(results[name]["multiply_adds_per_pixel_light"] * evaluations)
        for split, split_views in views.items():
            if not split_views:
                continue
            scores = Scores(bank.tile_size)
            for view in split_views:
                check()
                frame = renderer.render(view.gbuffer)[..., :3]
                error = flip_map(frame, view.ground_truth)
                view_scores = scores.add(view, frame, error)
                if split == "test" and name == primary:
                    pictures.append(_view_pictures(work, view, frame, error, view_scores))
            results[name][split] = scores.summary()
    test_views = views["test"]
    neural_ms = time_renderer(renderers[primary], test_views, check)
    cycles_s = statistics.fmean(dataset.record(v.index)["seconds"]["ground_truth"] for v in test_views)
    speedup = cycles_s * 1e3 / neural_ms
    width, height = test_views[0].gbuffer.width, test_views[0].gbuffer.height
    largest = max(test_views, key=lambda v: int(v.mask.sum()))
    check()
    figure_files = _figures(work, bank, primary, results, largest, bank_path)
    headline = {
        "model": primary,
        "test_psnr": results[primary]["test"]["psnr"],
        **{f"test_psnr_{name}": results[name]["test"]["psnr"] for name in models if name != primary},
        # a single network has no keys to miss
        "unseen_key_share_test": unseen_share(bank, test_views) if divided else None,
        "seam_ratio_test": results[primary]["test"]["seam_ratio"],
        "seam_step_ratio_test": results[primary]["test"]["seam_step_ratio"],
        "speedup_vs_cycles": speedup,
    }
    headline["aims"] = aims(results, primary)
    return {
        "bank": str(bank_path), "dataset": str(dataset.root), "renderer": renderer_name, "device": device,
        "metric_notes": "PSNR/SSIM/FLIP on sRGB display images (radiance clipped to [0,1]), face pixels only; "
                        "PSNR pooled over all face pixels of a split; seam_ratio = squared error on tile-border "
                        "pixels / inside tiles; seam_step_ratio = squared error of the step between neighbouring "
                        "face pixels across tile borders / within tiles (sees a tile's whole-tile bias)",
        "headline": headline,
        "models": results,
        "unseen_key_share": {s: unseen_share(bank, v) for s, v in views.items() if v and divided},
        "fallback": {"mode": bank.fallback_mode, "slot": bank.fallback_slot,
                     "val_psnr_by_mode": bank.provenance.get("fallback_val_psnr", {})} if divided else None,
        "buckets": {"slots": bank.n_slots, "slot_keys": bank.slot_keys, "slot_pixels": bank.slot_pixels},
        "timing": {"resolution": [width, height], "neural_ms_per_frame": neural_ms, "neural_renderer": renderer_name,
                   "cycles_s_per_frame": cycles_s,
                   "cycles_source": "mean ground-truth render seconds of the test samples, recorded in the "
                                    "dataset manifest by the same machine",
                   "ratio_cycles_over_neural": speedup},
        "views": pictures,
        "figures": figure_files,
    }


AIM_GAIN_DB = 1.0  # the hash bank over one network of the same per-pixel cost (division of labour pays)
AIM_BEST_DB = 34.0  # the best model on the test views
AIM_SEAM_STEP_RATIO = 1.2  # no visible tile seams


def aims(results: dict, primary: str = HASH_BANK) -> list[dict]:
    """The division-of-labour aims (docs/training.md), each with its measured value and whether it is met.

    The gain and seam aims are the hash bank's: a report on a single network only has the best-model aim.
    """
    test = {name: r["test"] for name, r in results.items() if "test" in r}
    out = []
    best = max(test, key=lambda name: test[name]["psnr"])
    best_aim = {"aim": f"best model >= {AIM_BEST_DB:.0f} dB test PSNR", "value": f"{best} {test[best]['psnr']:.2f}",
                "met": test[best]["psnr"] >= AIM_BEST_DB}
    if primary != HASH_BANK:
        return [best_aim]
    bank = test[HASH_BANK]
    if SINGLE_COST in test:
        gain = bank["psnr"] - test[SINGLE_COST]["psnr"]
        out.append({"aim": f"hash bank >= single_cost + {AIM_GAIN_DB:.1f} dB test PSNR", "value": round(gain, 3),
                    "unit": "dB", "met": gain >= AIM_GAIN_DB, **gain_spread(bank["views"], test[SINGLE_COST]["views"])})
        better = bank["ssim"] > test[SINGLE_COST]["ssim"] and bank["flip"] < test[SINGLE_COST]["flip"]
        out.append({"aim": "hash bank better than single_cost in SSIM and FLIP too", "value": better, "met": better})
    out.append(best_aim)
    ratio = bank["seam_step_ratio"]
    out.append({"aim": f"seam step ratio <= {AIM_SEAM_STEP_RATIO}", "value": ratio,
                "met": ratio is not None and ratio <= AIM_SEAM_STEP_RATIO})
    return out


def gain_spread(bank_views: list[dict], single_views: list[dict]) -> dict:
    """How far the test views pin the gain down: the mean of the per-view gains, its 95% interval
    over the views, and the number of views the bank shades better. A few views cannot rank two
    models that lie tenths of a dB apart."""
    paired = [(b["psnr"], s["psnr"]) for b, s in zip(bank_views, single_views) if b["index"] == s["index"]]
    if len(paired) < 2:
        return {}
    mean, low, high = paired_gain_interval(*zip(*paired))
    return {"per_view_mean": round(mean, 3), "interval_95": [round(low, 3), round(high, 3)], "views": len(paired),
            "views_better": sum(b > s for b, s in paired)}


def aim_value_text(aim: dict) -> str:
    """An aim's measured value as the report and the terminal show it: a gain signed, with its unit
    (and, where measured, its interval over the test views)."""
    value = aim["value"]
    if isinstance(value, float):
        text = f"{value:+.2f} {aim['unit']}" if aim.get("unit") else f"{value:.2f}"
        if "interval_95" in aim:
            low, high = aim["interval_95"]
            text += (f" pooled; per view {aim['per_view_mean']:+.2f}, 95% interval {low:+.2f} to {high:+.2f} "
                     f"over {aim['views']} test views, better on {aim['views_better']}")
        return text
    return str(value)


def _view_pictures(work: Path, view: View, frame: np.ndarray, error: np.ndarray, scores: dict) -> dict:
    stem = f"test_{view.index:06d}"
    return {
        **scores,
        "gbuffer": figures.save_png(figures.gbuffer_strip(view.gbuffer), work / f"{stem}_gbuffer.png"),
        "neural": figures.save_png(figures.frame_picture(frame), work / f"{stem}_neural.png"),
        "cycles": figures.save_png(figures.frame_picture(view.ground_truth), work / f"{stem}_cycles.png"),
        "error": figures.save_png(figures.error_picture(error, view.mask), work / f"{stem}_error.png"),
    }


def _figures(work: Path, bank: Bank, primary: str, results: dict, view: View, bank_path: Path) -> dict:
    files = {}
    if primary == HASH_BANK:
        keys = gbuffer_tile_keys(view.gbuffer, bank.tile_size, bank.bins)
        albedo = to_display(view.gbuffer.albedo.transpose(1, 2, 0))
        seen = bank.lut_seen[keys].astype(bool) | (keys == 0)
        files["keys"] = figures.save_png(figures.key_picture(keys, seen, albedo.shape[:2], bank.tile_size, albedo),
                                         work / "tile_keys.png", scale=2)
        files["buckets"] = figures.bucket_chart(bank.slot_pixels, work / "bucket_sizes.png")
    files |= {
        "seams": figures.bar_chart({n: r["test"]["seam_step_ratio"] or 0.0 for n, r in results.items()},
                                   work / "tile_seams.png", "Tile seams on test views",
                                   "step error across / within tiles", reference=1.0),
        "psnr": figures.bar_chart({n: r["test"]["psnr"] for n, r in results.items()}, work / "psnr.png",
                                  "Test PSNR (face pixels)", "dB"),
        "cost": figures.cost_chart({n: (r["multiply_adds_per_pixel_light_effective"], r["test"]["psnr"])
                                    for n, r in results.items()},
                                   work / "quality_against_cost.png"),
    }
    for name in results:
        curve = companion_path(results[name]["bank"], ".curve.png")
        if curve.exists():
            shutil.copy(curve, work / f"curve_{name}.png")
            files[f"curve_{name}"] = f"curve_{name}.png"
    return files


def _given(provenance: dict, evaluations: float = 1.0) -> str:
    """One line: the labelled views, the teacher-labelled pixels and the start of a model's training
    (and, for a border-blended bank, the network evaluations a pixel pays)."""
    per_light = provenance.get("per_light_targets", False)
    parts = [f"{provenance.get('train_samples', '?')} labelled views, "
             + ("each light's own ground truth" if per_light else "ground truth summed over the lights")]
    if provenance.get("teacher_pixels"):
        unit = "pixel-light pairs" if per_light else "pixels"
        parts.append(f"{provenance['teacher_pixels']} teacher-labelled {unit} of "
                     f"{provenance['unlabelled_samples']} unlabelled views")
    if provenance.get("borrowed_pixels"):
        parts.append(f"{provenance['borrowed_pixels']} borrowed records: neighbouring tiles' pixels within "
                     f"{provenance['halo']} px of a border, for the specialists only")
    if provenance.get("teacher_kind"):
        parts.append(f"teacher: {provenance['teacher_kind']}")
    if provenance.get("warm_start"):
        how = provenance.get("warm_start_how") or "copy"
        parts.append(f"started from {provenance.get('warm_start_from') or 'the teacher'} ({how})")
    else:
        parts.append("random start")
    if provenance.get("cost_multiply_adds"):
        parts.append(f"hidden widths sized to the bank's {provenance['cost_multiply_adds']:,} multiply-adds per pixel "
                     "and light on the validation views (its border blend included)")
    if provenance.get("learning_rate"):
        parts.append(f"peak learning rate {provenance['learning_rate']:.2g}")
    chosen = provenance.get("bins_chosen")
    if chosen and provenance.get("model") == HASH_BANK:
        shares = ", ".join(f"{b}: {100 * share:.1f}%" for b, share in chosen["unseen_share"].items())
        parts.append(f"{chosen['bins']} UV bins chosen from the data (validation tiles without a network: {shares})")
    if provenance.get("networks_stopped_on_own_pixels"):
        parts.append(f"{provenance['networks_stopped_on_own_pixels']} networks stopped early on their own validation "
                     "pixels")
    if provenance.get("specialists_judged"):
        parts.append(f"{provenance['specialists_replaced']} of {provenance['specialists_judged']} judged specialists "
                     "replaced by the shared network")
    if provenance.get("specialists_unjudged"):
        parts.append(f"{provenance['specialists_unjudged']} with too few validation pixels to be judged use it too")
    if evaluations > 1.0:
        parts.append(f"border blend: {evaluations:.2f} network evaluations per pixel on the test views")
    parts.append(f"{provenance.get('steps', '?')} steps, {provenance.get('seconds', '?')} s")
    return "; ".join(parts)


def _html(m: dict) -> str:
    esc = html.escape
    rows = []
    for name, r in m["models"].items():
        for split in ("val", "test"):
            if split in r:
                s = r[split]
                seam = " / ".join("-" if s[k] is None else f"{s[k]:.2f}" for k in ("seam_ratio", "seam_step_ratio"))
                rows.append(f"<tr><td>{esc(name)}</td><td>{split}</td><td>{s['psnr']:.2f}</td><td>{s['ssim']:.4f}</td>"
                            f"<td>{s['flip']:.4f}</td><td>{seam}</td><td>{r['slots']}</td><td>{r['parameters']}</td>"
                            f"<td>{r.get('multiply_adds_per_pixel_light_effective', '-')}</td></tr>")
    t = m["timing"]
    views = "".join(
        f"<tr><td>{v['index']}<br>PSNR {v['psnr']:.2f}<br>SSIM {v['ssim']:.3f}<br>FLIP {v['flip']:.3f}</td>"
        + "".join(f"<td><img src='{v[k]}'></td>" for k in ("gbuffer", "neural", "cycles", "error")) + "</tr>"
        for v in m["views"])
    figs = "".join(f"<figure><img src='{f}'><figcaption>{esc(k)}</figcaption></figure>" for k, f in m["figures"].items())
    keys_note = ""
    if m["fallback"] is not None:  # a hash bank: its tiles' keys may have had no bucket
        unseen = ", ".join(f"{s}: {100 * x:.1f}%" for s, x in m["unseen_key_share"].items())
        measured = ", ".join(f"{mode} {psnr:.2f} dB" for mode, psnr in m["fallback"]["val_psnr_by_mode"].items())
        keys_note = (f"<p>Tiles with keys unseen in training: {unseen}. Their fallback: "
                     f"<b>{esc(m['fallback']['mode'])}</b>, chosen on the validation views ({esc(measured)}).</p>")
    aims_rows = "".join(f"<tr><td>{esc(a['aim'])}</td><td>{esc(aim_value_text(a))}</td>"
                        f"<td>{'met' if a['met'] else '<b>not met</b>'}</td></tr>" for a in m["headline"].get("aims", []))
    given = "".join(f"<tr><td>{esc(name)}</td><td>{esc(DESCRIPTIONS.get(name, ''))}</td>"
                    f"<td>{esc(_given(r['provenance'], r.get('network_evaluations_per_pixel', 1.0)))}</td></tr>" for name, r in m["models"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Neural face report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:4px 8px}} img{{image-rendering:pixelated;max-width:100%}} figure{{display:inline-block;margin:1em}}
.views img{{height:192px}}</style></head><body>
<h1>Neural face report</h1>
<p>Bank <code>{esc(m['bank'])}</code>, dataset <code>{esc(m['dataset'])}</code>, renderer {esc(m['renderer'])}
on {esc(m['device'])}.</p>
<p>{esc(m['metric_notes'])}.</p>
<h2>Quality</h2>
<table><tr><th>model</th><th>split</th><th>PSNR dB</th><th>SSIM</th><th>FLIP</th><th>seam ratio / step ratio</th><th>slots</th>
<th>parameters</th><th>multiply-adds per pixel and light (with the border blend's second networks)</th></tr>{''.join(rows)}</table>
<h2>Aims</h2>
<table><tr><th>aim</th><th>measured</th><th></th></tr>{aims_rows}</table>
<h2>What each model was given</h2>
<table><tr><th>model</th><th>what it is</th><th>training data and start</th></tr>{given}</table>
{keys_note}
<h2>Speed</h2>
<p>Neural ({esc(t['neural_renderer'])}): {t['neural_ms_per_frame']:.1f} ms per {t['resolution'][0]}x{t['resolution'][1]}
frame; Cycles: {t['cycles_s_per_frame']:.2f} s per frame ({esc(t['cycles_source'])}).
Ratio: <b>{t['ratio_cycles_over_neural']:.0f}x</b>.</p>
<h2>Test views</h2><p>G-buffer (albedo, normal, UV, light passes) | neural | Cycles | FLIP error</p>
<table class="views">{views}</table>
<h2>Figures</h2>{figs}
</body></html>
"""
