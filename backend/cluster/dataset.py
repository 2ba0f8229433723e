"""The driver of `generate --cluster`: workers are checked, then samples handed out one at a time.

Order matters for "nothing written on bad input": the scene is packed and every worker has loaded
it and passed the checks (bpy present, the driver's Blender version and recipe, the same object
bounds) before DatasetJob.start() touches the dataset folder. Each returned sample is written
atomically and committed to manifest.json by DatasetJob.commit, exactly as a local run commits.
A worker that dies (kill -9, a lost node) takes no sample with it: its sample goes back to the
queue and a replacement worker is started; a sample that killed MAX_ATTEMPTS workers stops the run.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.atomic import write_bytes_atomic
from backend.errors import UserError

from .connection import ClusterAddress, local_layout
from .render_worker import SampleRenderer, recipe_fingerprint

MAX_ATTEMPTS = 3  # workers a single sample may lose before the run stops
START_TIMEOUT_S = 120.0  # for the first workers to start and load the scene
NO_WORKER_TIMEOUT_S = 120.0  # samples left but no live worker for this long: stop, rerun to resume
WAIT_S = 0.5


@dataclass
class RunStats:
    samples: int = 0
    bytes_received: int = 0
    write_seconds: float = 0.0  # driver time writing files and committing the manifest
    requeued: list[int] = field(default_factory=list)
    workers: int = 0
    start_seconds: float = 0.0  # connect, start the workers, load the scene on each
    render_seconds: float = 0.0  # from the first sample handed out to the last committed

    def summary(self) -> str:
        if not self.samples:
            return f"cluster: nothing left to render ({self.workers} workers started)"
        per_sample = self.bytes_received / max(self.samples, 1) / 1024
        writes = self.samples / self.write_seconds if self.write_seconds else float("inf")
        rate = self.bytes_received / self.write_seconds / 2**20 if self.write_seconds else float("inf")
        return (f"cluster: {self.samples} samples in {self.render_seconds:.1f} s on {self.workers} workers "
                f"after a {self.start_seconds:.1f} s start; {per_sample:.0f} KiB received per sample; "
                f"driver commits {writes:.0f} samples/s ({rate:.0f} MiB/s)")


def worker_plan(ray, address: ClusterAddress, worker_cpus: int, device: str = "CPU") -> list[tuple[str | None, int]]:
    """(node id or None, CPUs) of each worker to start: `worker_cpus` each as many as fit, or one per node (0);
    for a GPU `device`, one worker per GPU, with its share of the node's CPUs."""
    if device != "CPU":
        plan = []
        for node in ray.nodes():
            gpus = int(node["Resources"].get("GPU", 0)) if node["Alive"] else 0
            cpus = int(node["Resources"].get("CPU", 0))
            plan += [(node["NodeID"], max(1, cpus // gpus))] * gpus if gpus else []
        if not plan:
            raise UserError(f"the Ray cluster at {address} has no node with a GPU for --device {device} "
                            "(`ray status` lists the GPUs Ray sees); add GPU nodes or use --device CPU")
        return plan
    if address.is_local:
        return [(None, local_layout(address.local_workers)[1])] * address.local_workers
    plan = []
    for node in ray.nodes():
        cpus = int(node["Resources"].get("CPU", 0)) if node["Alive"] else 0
        if cpus:
            sizes = [cpus] if worker_cpus <= 0 else [worker_cpus] * (cpus // worker_cpus)
            plan += [(node["NodeID"], size) for size in sizes]
    if not plan:
        raise UserError(f"the Ray cluster at {address} has no node with {max(worker_cpus, 1)} CPUs; "
                        "add worker nodes (`ray start --address ...`) or lower --worker-cpus")
    return plan


class WorkerPool:
    """The driver's actors: started, checked against the driver, replaced when one dies."""

    def __init__(self, ray, scene: bytes, settings: dict, expected: dict, device: str = "CPU"):
        self.ray = ray
        self.actor_class = ray.remote(SampleRenderer)
        self.scene_ref = ray.put(scene)
        self.settings = settings
        self.device = device
        self.expected = expected  # blender version, recipe fingerprint, object bounds of the driver
        self.nodes: dict = {}  # actor -> node name, once started and checked
        self.cpus: dict = {}  # actor -> its CPUs, from launch on (a replacement gets as many)

    def launch(self, cpus: int, node_id: str | None = None):
        """A new worker, on `node_id` if it has room (else where Ray places it), and its start() reference."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        placement = NodeAffinitySchedulingStrategy(node_id, soft=True) if node_id else "DEFAULT"
        actor = self.actor_class.options(num_cpus=cpus, num_gpus=0 if self.device == "CPU" else 1, max_restarts=0,
                                         max_task_retries=0, scheduling_strategy=placement).remote()
        self.cpus[actor] = cpus
        return actor, actor.start.remote(self.scene_ref, self.settings, cpus, self.expected["blender"], self.device)

    def replace(self, actor):
        """Forget a dead worker and launch one with its CPUs."""
        self.nodes.pop(actor, None)
        return self.launch(self.cpus.pop(actor))

    def accept(self, actor, info: dict) -> None:
        """Raise UserError naming the node unless the worker renders exactly what the driver would."""
        node, blender = info["node"], self.expected["blender"]
        if info["blender"] is None:
            raise UserError(f"worker on {node} cannot import bpy ({info['error']}); install the worker's venv "
                            f"with `pip install -e \".[cluster]\"` on Python {info['python']} (docs/cluster.md)")
        if info["blender"] != blender:
            raise UserError(f"worker on {node} has Blender {info['blender']}, the driver {blender}; "
                            f"install bpy=={blender} there (pip install -e \".[cluster]\")")
        if info["object"] is None and info["error"]:
            raise UserError(f"worker on {node}: {info['error']}")
        if info["fingerprint"] != self.expected["fingerprint"]:
            raise UserError(f"worker on {node} runs other dataset code than the driver "
                            "(blender_addon differs); check out the driver's commit there")
        if info["object"] != self.expected["object"]:
            raise UserError(f"worker on {node} sees object {info['object']} after loading the scene, "
                            f"the driver {self.expected['object']}; both must load the same file")
        self.nodes[actor] = node

    def close(self, timeout_s: float = 10.0) -> None:
        """Let the live workers remove their folders before the connection ends them."""
        try:
            self.ray.get([actor.close.remote() for actor in self.nodes], timeout=timeout_s)
        except (self.ray.exceptions.RayError, self.ray.exceptions.GetTimeoutError):
            pass  # a worker that cannot answer now is swept up by the next run on its node

    def start(self, plan: list[tuple[str | None, int]]) -> None:
        launched = [self.launch(cpus, node_id) for node_id, cpus in plan]
        try:
            infos = self.ray.get([ref for _, ref in launched], timeout=START_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            raise UserError(f"{len(plan)} workers of {plan[0][1]} CPUs did not start within {START_TIMEOUT_S:.0f} s; "
                            "the cluster may lack free CPUs (`ray status`)") from None
        except self.ray.exceptions.RayTaskError as exc:
            raise UserError(f"a worker could not load the scene: {exc.cause}") from None
        for (actor, _), info in zip(launched, infos):
            self.accept(actor, info)


def render_samples(ray, pool: WorkerPool, job,
                   on_change: Callable[[int, int], None] = lambda finished, live: None) -> RunStats:
    """Hand out job.pending to the pool's workers until every sample is committed.

    A Ctrl-C (KeyboardInterrupt) ends it at once: finished samples are committed, the workers
    go with the driver's connection."""
    lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError)
    stats = RunStats()
    queue = deque(job.pending)
    attempts = {index: 0 for index in queue}
    committed = {record["index"] for record in job.manifest["samples"]}
    idle = deque(pool.nodes)
    busy: dict = {}  # ObjectRef -> (actor, sample index, or None while a replacement loads)
    no_worker_since = None
    while queue or any(index is not None for _, index in busy.values()):
        while idle and queue:
            actor, index = idle.popleft(), queue.popleft()
            attempts[index] += 1
            busy[actor.render.remote(index)] = (actor, index)
        ready, _ = ray.wait(list(busy), num_returns=1, timeout=WAIT_S)
        for ref in ready:
            actor, index = busy.pop(ref)
            try:
                result = ray.get(ref)
            except lost as exc:
                if index is not None:
                    if attempts[index] >= MAX_ATTEMPTS:
                        raise UserError(f"sample {index} lost {MAX_ATTEMPTS} workers ({type(exc).__name__}); "
                                        "check the nodes' memory and logs, then rerun to resume") from None
                    queue.appendleft(index)
                    stats.requeued.append(index)
                replacement, start_ref = pool.replace(actor)
                busy[start_ref] = (replacement, None)
                on_change(0, len(pool.nodes))
                continue
            except ray.exceptions.RayTaskError as exc:
                what = "a replacement worker could not load the scene" if index is None else \
                    f"sample {index} failed on {pool.nodes.get(actor, 'a worker')}"
                raise UserError(f"{what}: {exc.cause}") from None
            if index is None:
                pool.accept(actor, result)
                on_change(0, len(pool.nodes))
            else:
                commit(job, index, *result, committed, stats)
                on_change(1, len(pool.nodes))
            idle.append(actor)
        if pool.nodes:
            no_worker_since = None
        elif no_worker_since is None:
            no_worker_since = time.monotonic()
        elif time.monotonic() - no_worker_since > NO_WORKER_TIMEOUT_S:
            raise UserError(f"no live worker for {NO_WORKER_TIMEOUT_S:.0f} s with {len(queue)} samples left; "
                            "the finished samples are kept: add nodes and rerun the same command")
    return stats


def commit(job, index: int, record: dict, files: dict[str, bytes], committed: set[int], stats: RunStats) -> None:
    """Write one returned sample's files atomically, trace its G-buffer (milliseconds: the driver
    holds the scene), then add its record to the manifest."""
    expected = {record.get("ground_truth")} - {None}  # unlabelled views: no ground truth, nothing to ship
    if record.get("index") != index or set(files) != expected or not all(  # a file of this sample in samples/
            os.path.dirname(name) == "samples" and os.path.basename(name).startswith(f"{index:06d}.")
            for name in expected):
        raise UserError(f"a worker returned sample {record.get('index')} with files {sorted(files)} "
                        f"for sample {index}; is it running the driver's code?")
    if index in committed:  # never written twice, even if a sample ever came back twice
        return
    start = time.perf_counter()
    for name, data in files.items():
        write_bytes_atomic(os.path.join(job.out_dir, name), data)
        stats.bytes_received += len(data)
    record["seconds"]["gbuffer"] = round(job.trace_gbuffer(record), 4)
    job.commit(record)
    committed.add(index)
    stats.write_seconds += time.perf_counter() - start
    stats.samples += 1


def expected_worker(job) -> dict:
    """What every worker must report: the driver's Blender, recipe and object bounds."""
    import bpy

    from backend.commands.generate import import_addon

    centre, radius = import_addon().scene_setup.bounds(job.target)
    return {"blender": bpy.app.version_string, "fingerprint": recipe_fingerprint(),
            "object": {"name": job.target.name, "bbox_center": centre, "bounding_radius": radius}}


def generate_on_cluster(job, address: ClusterAddress, token_file: str | None, worker_cpus: int,
                        progress_bar: Callable) -> RunStats:
    """Pack, connect, check the workers, then create or resume the dataset and render what is missing."""
    from .connection import connect
    from .scene_pack import pack_scene

    scene = pack_scene(job.target)
    expected = expected_worker(job)
    started = time.perf_counter()
    with connect(address, token_file) as ray:
        pool = WorkerPool(ray, scene, job.settings.to_json(), expected, job.device)
        pool.start(worker_plan(ray, address, worker_cpus, job.device))
        job.start()  # the first write to the dataset folder
        start_seconds = time.perf_counter() - started
        with job, progress_bar(job) as bar:
            def on_change(finished: int, live: int) -> None:
                bar.set_postfix_str(f"workers={live}", refresh=False)
                bar.update(finished) if finished else bar.refresh()

            on_change(0, len(pool.nodes))
            stats = render_samples(ray, pool, job, on_change)
        stats.workers, stats.start_seconds = len(pool.cpus), start_seconds
        stats.render_seconds = time.perf_counter() - started - start_seconds
        pool.close()  # only after a complete run: after a Ctrl-C, a busy worker would hold the exit up
        return stats
