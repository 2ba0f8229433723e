"""`train --cluster`: one training job on a cluster node (a GPU with --device cuda), the bank brought back.

The bank trains as one batched job, as locally: `backend.training.train` runs unchanged inside a
Ray actor, on a copy of the dataset sent through the object store (no shared filesystem). The
actor is threaded, so the driver polls its progress and asks it to stop while train() runs; a
cancel stops at the next step and brings the checkpoint back, so `--resume` continues locally or
on the cluster. The bank, its checkpoint and its curve are written next to --out atomically.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from backend.atomic import write_bytes_atomic
from backend.errors import UserError

from .connection import ClusterAddress, connect

POLL_S = 0.5
CHECKPOINT, CURVE = ".ckpt", ".curve.png"  # the companions train() writes beside the bank


def dataset_files(folder: str) -> dict[str, bytes]:
    """manifest.json and every listed sample's files, by path relative to the dataset folder."""
    from backend.dataset import open_dataset

    dataset = open_dataset(folder)
    names = ["manifest.json"]
    for index in dataset.indices():
        record = dataset.record(index)
        names += [record["gbuffer"], record["ground_truth"], f"samples/{index:06d}.json"]
    return {name: Path(folder, name).read_bytes() for name in names if name and Path(folder, name).is_file()}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()):
            raise ValueError(f"refusing to write {name!r} outside {root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TrainingRunner:
    """Made a threaded Ray actor by the driver; train() runs while progress() and stop() answer."""

    def __init__(self):
        self.latest: dict | None = None
        self.stopping = threading.Event()

    def train(self, files: dict[str, bytes], config: dict, companions: dict[str, bytes]) -> dict:
        from backend.bank import companion_path
        from backend.training import TrainConfig, train

        folder = Path(tempfile.mkdtemp(prefix="nf-train-"))
        try:
            _write_tree(folder / "dataset", files)
            bank = folder / "out" / Path(config["out"]).name
            _write_tree(bank.parent, {companion_path(bank, suffix).name: data for suffix, data in companions.items()})
            settings = TrainConfig(**{**config, "data": str(folder / "dataset"), "out": str(bank)})
            try:
                result = train(settings, on_progress=self._on_progress, should_stop=self.stopping.is_set)
            except UserError as exc:
                return {"error": str(exc)}
            brought = {"": result.bank_path, CHECKPOINT: result.checkpoint_path, CURVE: result.curve_path}
            return {"result": {"steps": result.steps, "val_psnr": result.val_psnr, "seconds": result.seconds,
                               "stopped_early": result.stopped_early, "cancelled": result.cancelled},
                    "files": {suffix: path.read_bytes() for suffix, path in brought.items()
                              if path is not None and path.is_file()}}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _on_progress(self, progress) -> None:
        self.latest = asdict(progress)

    def progress(self) -> dict | None:
        return self.latest

    def stop(self) -> None:
        self.stopping.set()


def train_on_cluster(config, address: ClusterAddress, token_file: str | None, on_progress):
    """Run `train(config)` on the cluster; returns a TrainResult whose files are local again."""
    from backend.bank import companion_path
    from backend.training import TrainProgress, TrainResult

    files = dataset_files(config.data)
    bank = Path(config.out)
    companions = {CHECKPOINT: companion_path(bank, CHECKPOINT).read_bytes()} \
        if config.resume and companion_path(bank, CHECKPOINT).is_file() else {}
    wants_gpu = config.device.startswith("cuda")
    with connect(address, token_file) as ray:
        if wants_gpu and ray.cluster_resources().get("GPU", 0) < 1:
            raise UserError(f"the Ray cluster at {address} has no GPU; add a GPU node or train with --device cpu")
        runner = ray.remote(TrainingRunner).options(num_gpus=1 if wants_gpu else 0, num_cpus=1,
                                                    max_concurrency=4, max_restarts=0).remote()
        job = runner.train.remote(ray.put(files), {**asdict(config), "widths": list(config.widths)}, companions)
        answer = _follow(ray, runner, job, on_progress, TrainProgress)
    if "error" in answer:
        raise UserError(answer["error"])
    for suffix, data in answer["files"].items():
        write_bytes_atomic(companion_path(bank, suffix) if suffix else bank, data)
    outcome = answer["result"]
    present = {suffix: (companion_path(bank, suffix) if suffix else bank) for suffix in answer["files"]}
    return TrainResult(bank_path=present.get(""), curve_path=present.get(CURVE),
                       checkpoint_path=companion_path(bank, CHECKPOINT), **outcome)


def _follow(ray, runner, job, on_progress, progress_type) -> dict:
    """Relay progress until the job answers; the first Ctrl-C asks the job to stop (it keeps a checkpoint).

    Ctrl-C only sets a flag that the loop reads between Ray calls: a KeyboardInterrupt raised inside
    one of them could be lost there, and the job would train on with nobody waiting for it.
    """
    interrupts = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: interrupts.append(number))
    stopping = False
    try:
        while True:
            if interrupts and not stopping:
                stopping = True
                ray.get(runner.stop.remote())
                print("stopping the cluster job at its next step (Ctrl-C again to abandon it)", file=sys.stderr)
            elif len(interrupts) > 1:
                raise KeyboardInterrupt
            ready, _ = ray.wait([job], timeout=POLL_S)
            latest = ray.get(runner.progress.remote())
            if latest is not None:
                on_progress(progress_type(**latest))
            if ready:
                try:
                    return ray.get(job)
                except ray.exceptions.RayActorError as exc:
                    raise UserError(f"the training worker died ({type(exc).__name__}); nothing was written: "
                                    "rerun the command (with --resume to continue from a local checkpoint)") from None
    finally:
        signal.signal(signal.SIGINT, previous)