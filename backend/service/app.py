"""The FastAPI application: health, training jobs, rendering, and file transfer for remote clients.

Paths in requests are confined to the configured folders (403 otherwise). Every user-facing
problem becomes a 4xx answer `{"detail": message}`; a 500 means a bug in the service.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from backend import __version__
from backend.atomic import atomic_open, write_bytes_atomic
from backend.errors import UserError
from backend.outputs import BANK, FRAME, REPORT, check_output
from backend.service.dataset_jobs import GenerateJob
from backend.service.jobs import JobConflict, Jobs, TrainingJob
from backend.service.schemas import (
    DatasetRequest, DatasetStatus, ErrorBody, Health, JobStatus, PreviewRequest, RenderRequest, RenderResult, StoredFile,
    TrainRequest,
)
from backend.service.security import PathRefused, TokenMiddleware, confine
from backend.service.settings import Settings

FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
DEFAULT_FRAME = "frame.npy"  # each render without `out` replaces the last one
OVERWRITE_FLAG = '"overwrite": true'  # how a request asks to replace what this project did not write
# A stopping service waits this long for a cancelled job (a step, a report stage); with uvicorn's 5 s for
# open requests it stays within the 15 s the add-on gives the service before killing it.
JOB_STOP_WAIT_S = 5.0
MAX_PREVIEW_SIDE = 8192
# A preview frame's in-place write: `out` was resolved inside the allowed folders, so a symlink put there
# since is not followed (POSIX); binary on Windows.
IN_PLACE_FLAGS = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class NotFound(Exception):
    """A file or job the request names does not exist (answered with 404)."""


class NotConfigured(Exception):
    """The request needs what this service was not started with, e.g. a Ray cluster (answered with 409)."""


def _errors(*codes: int) -> dict:
    described = {401: "missing or wrong token", 403: "path outside the allowed folders", 404: "not found",
                 409: "conflicts with a running job or with how the service was started", 413: "request too large",
                 422: "malformed or unusable input"}
    documented = {code: {"model": ErrorBody, "description": described[code]} for code in (401, 422, *codes)}
    return {**documented, 413: {"description": described[413]}}


class RendererCache:
    """Keeps the last bank's renderer, so a live preview does not reload the bank for every frame."""

    def __init__(self):
        self._key = None
        self._renderer = None
        self.lock = threading.Lock()  # one frame at a time: renderers keep per-frame buffers

    def get(self, bank_path: Path, renderer_name: str):
        """The renderer for this bank file (reloaded when the file changes); call with `lock` held."""
        from backend.bank import load_bank
        from backend.renderers import get_renderer

        key = (bank_path, bank_path.stat().st_mtime_ns, renderer_name)
        if key != self._key:
            self._renderer = get_renderer(renderer_name, load_bank(bank_path))
            self._key = key
        return self._renderer


class TracerCache:
    """Keeps the last scene's tracer (its ray-tracing structure is built once per mesh file): Live's
    camera and light moves reuse it; an edited mesh arrives as a new file."""

    def __init__(self):
        self._key = None
        self._tracer = None

    def get(self, mesh: Path, albedo: Path, shadow_rays: int):
        """Call with RendererCache.lock held (one frame at a time)."""
        from backend.tracer import get_tracer, load_parts

        key = (mesh, mesh.stat().st_mtime_ns, albedo, albedo.stat().st_mtime_ns, shadow_rays)
        if key != self._key:
            self._tracer, self._key = None, None
            self._tracer = get_tracer(load_parts(mesh, albedo), shadow_rays=shadow_rays)
            self._key = key
        return self._tracer


def _existing(path: str, settings: Settings, what: str) -> Path:
    resolved = confine(path, settings)
    if not resolved.exists():
        raise NotFound(f"{what} not found: {resolved}")
    return resolved


def _write_frame(frame: np.ndarray, out: Path, durable: bool) -> None:
    """The frame as .npy. A rendered frame is renamed into place once complete and on disk; a preview
    frame (`durable` False) is written over the last one in place: its client reads each frame before it
    asks for the next (one frame at a time, as with the default `out`, which clients share), and rewriting
    pages already in memory takes 1 ms where a fresh 4 MB file takes 10-20 (512 px)."""
    frame = np.ascontiguousarray(frame, dtype=np.float32)
    if durable:
        with atomic_open(out) as stream:
            np.save(stream, frame)
        return
    with os.fdopen(os.open(out, IN_PLACE_FLAGS, 0o644), "wb") as stream:
        np.save(stream, frame)
        stream.truncate()  # a larger earlier frame leaves nothing behind


def _same_cluster(address: str) -> str:
    """The canonical form of a cluster address (`local` is `local:1`), as `serve --cluster` keeps it."""
    from backend.cluster.connection import parse_address

    try:
        return str(parse_address(address))
    except ValueError:
        return address  # not an address at all: it differs from the service's


def create_app(settings: Settings) -> FastAPI:
    jobs = Jobs()
    dataset_jobs = Jobs()  # one dataset job at a time, beside one training job
    renderers = RendererCache()
    tracers = TracerCache()
    settings.files_folder.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app):
        yield
        for job_list in (jobs, dataset_jobs):
            for job in await asyncio.to_thread(job_list.cancel_all, JOB_STOP_WAIT_S):
                outcome = job.state if job.state not in ("running", "reporting") else \
                    f"still {job.state} after {JOB_STOP_WAIT_S:.0f} s, abandoned"
                print(f"{job.KIND} job {job.id} stopped with the service: {outcome}", flush=True)
        if settings.temporary_work_folder:
            shutil.rmtree(settings.work_folder, ignore_errors=True)

    app = FastAPI(title="Neural Face service", version=__version__, lifespan=lifespan,
                  max_body_size=settings.max_json_bytes,
                  description="Local service of the Neural Face Blender add-on: trains weight banks and "
                              "shades G-buffers. Every request needs `Authorization: Bearer <token>`.")
    app.add_middleware(TokenMiddleware, token=settings.token)

    def detail(status: int, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.add_exception_handler(PathRefused, lambda req, exc: detail(403, exc))
    app.add_exception_handler(NotFound, lambda req, exc: detail(404, exc))
    app.add_exception_handler(JobConflict, lambda req, exc: detail(409, exc))
    app.add_exception_handler(NotConfigured, lambda req, exc: detail(409, exc))
    app.add_exception_handler(UserError, lambda req, exc: detail(422, exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
        )
        return JSONResponse({"detail": problems or "invalid request"}, status_code=422)

    @app.get("/health", response_model=Health, responses=_errors())
    def health():
        return Health(status="ok", version=__version__, hostname=socket.gethostname(),
                      files_folder=str(settings.files_folder))

    @app.post("/train", response_model=JobStatus, status_code=202, responses=_errors(403, 404, 409))
    def start_training(request: TrainRequest):
        dataset = _existing(request.dataset, settings, "dataset folder")
        bank = confine(request.bank, settings) if request.bank else dataset / "bank.nfbank"
        report_dir = confine(request.report_dir, settings) if request.report_dir else bank.with_name(bank.stem + "_report")
        for option, path, kind in (("bank", bank, BANK), ("report_dir", report_dir, REPORT)):
            check_output(path, kind, request.overwrite, option, OVERWRITE_FLAG)  # now, not after training
        job = jobs.start(TrainingJob(dataset=dataset, bank=bank, report_dir=report_dir, steps=request.steps))
        return job.status()

    def _job(job_id: str, job_list: Jobs = jobs):
        job = job_list.get(job_id)
        if job is None:
            raise NotFound(f"no {'training' if job_list is jobs else 'dataset'} job {job_id!r}")
        return job

    @app.get("/train/{job_id}", response_model=JobStatus, responses=_errors(404))
    def training_status(job_id: str = PathParam(max_length=64)):
        return _job(job_id).status()

    @app.post("/train/{job_id}/cancel", response_model=JobStatus, responses=_errors(404))
    def cancel_training(job_id: str = PathParam(max_length=64)):
        """Stop the job: training at its next step (no bank is written), the report at its next stage
        (the bank is kept, no report is written). A finished job stays as it is."""
        job = _job(job_id)
        job.stop.set()
        return job.status()

    @app.post("/dataset", response_model=DatasetStatus, status_code=202, responses=_errors(403, 404, 409))
    def start_dataset(request: DatasetRequest):
        """Generate Dataset on the service's Ray cluster (`serve --cluster`); resumes a partial dataset."""
        if not settings.cluster:
            raise NotConfigured("this service has no Ray cluster; start it with `python -m backend serve "
                                "--cluster HOST:PORT` (docs/cluster.md), or generate the dataset in Blender")
        if request.cluster and _same_cluster(request.cluster) != settings.cluster:
            raise NotConfigured(f"this service renders on the cluster at {settings.cluster}, not {request.cluster}; "
                                "set that address in the add-on's preferences or restart the service")
        scene = _existing(request.scene, settings, "scene file")
        out = confine(request.out, settings)
        job = GenerateJob(scene=scene, out=out, settings=request.settings, cluster=settings.cluster,
                          token_file=settings.cluster_token_file, work_folder=settings.work_folder,
                          overwrite=request.overwrite)
        return dataset_jobs.start(job).status()

    @app.get("/dataset/{job_id}", response_model=DatasetStatus, responses=_errors(404))
    def dataset_status(job_id: str = PathParam(max_length=64)):
        return _job(job_id, dataset_jobs).status()

    @app.post("/dataset/{job_id}/cancel", response_model=DatasetStatus, responses=_errors(404))
    def cancel_dataset(job_id: str = PathParam(max_length=64)):
        """Stop handing out samples; the finished ones stay in the dataset, and a new job resumes it."""
        job = _job(job_id, dataset_jobs)
        job.stop.set()
        return job.status()

    def shade(gbuffer, bank: Path, renderer_name: str, out: Path, timings: dict, durable: bool = True) -> RenderResult:
        """Shade with the cached renderer and write the frame (see _write_frame); call with renderers.lock held."""
        t0 = time.perf_counter()
        renderer = renderers.get(bank, renderer_name)
        t1 = time.perf_counter()
        frame = renderer.render(gbuffer)
        t2 = time.perf_counter()
        _write_frame(frame, out, durable)
        timings.update(bank_s=t1 - t0, shading_s=t2 - t1, write_s=time.perf_counter() - t2)
        return RenderResult(frame=str(out), width=frame.shape[1], height=frame.shape[0], renderer=renderer.name,
                            timings=timings)

    @app.post("/render", response_model=RenderResult, responses=_errors(403, 404))
    def render(request: RenderRequest):
        bank = _existing(request.bank, settings, "weight bank (train one first)")
        gbuffer_path = _existing(request.gbuffer, settings, "G-buffer")
        out = confine(request.out, settings) if request.out else settings.files_folder / DEFAULT_FRAME
        if out.suffix != ".npy":
            raise UserError(f"out {out}: frames are written as .npy")
        check_output(out, FRAME, request.overwrite, "out", OVERWRITE_FLAG)
        from backend.dataset import read_gbuffer
        from backend.rendering import background_for

        start = time.perf_counter()
        gbuffer = read_gbuffer(gbuffer_path)
        gbuffer.background = background_for(gbuffer, gbuffer_path, "auto")  # as `python -m backend render`
        with renderers.lock:
            return shade(gbuffer, bank, request.renderer, out, {"read_s": time.perf_counter() - start})

    @app.post("/preview", response_model=RenderResult, responses=_errors(403, 404))
    def preview(request: PreviewRequest):
        """Trace the G-buffer of a camera and lights on a mesh with the dataset's baked albedo, and shade it:
        the Neural Render Preview without Cycles."""
        bank = _existing(request.bank, settings, "weight bank (train one first)")
        mesh = _existing(request.mesh, settings, "mesh")
        albedo = _existing(request.albedo, settings, "baked albedo (generate the dataset first)")
        width, height = request.resolution
        if not (1 <= width <= MAX_PREVIEW_SIDE and 1 <= height <= MAX_PREVIEW_SIDE):
            raise UserError(f"resolution {width}x{height}: width and height must be 1..{MAX_PREVIEW_SIDE}")
        if round(request.shadow_rays ** 0.5) ** 2 != request.shadow_rays:
            raise UserError(f"shadow_rays {request.shadow_rays} must be a square number (4, 9, 16, ...)")
        out = confine(request.out, settings) if request.out else settings.files_folder / DEFAULT_FRAME
        if out.suffix != ".npy":
            raise UserError(f"out {out}: frames are written as .npy")
        check_output(out, FRAME, request.overwrite, "out", OVERWRITE_FLAG)
        from backend.rendering import DEFAULT_BACKGROUND

        from backend.dataset import lights_array

        lights = lights_array([light.model_dump() for light in request.lights], "preview request")
        with renderers.lock:
            start = time.perf_counter()
            tracer = tracers.get(mesh, albedo, request.shadow_rays)
            gbuffer = tracer.trace(request.camera.model_dump(), lights, (width, height), source=str(mesh))
            gbuffer.background = np.broadcast_to(np.array(DEFAULT_BACKGROUND, np.float32)[:, None, None],
                                                 (3, height, width)).copy()
            return shade(gbuffer, bank, request.renderer, out, {"read_s": 0.0, "trace_s": time.perf_counter() - start},
                         durable=False)

    upload_body = {"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

    @app.put("/files/{name}", response_model=StoredFile, responses=_errors(), openapi_extra=upload_body,
             max_body_size=settings.max_upload_bytes)
    async def upload(request: Request, name: str = PathParam(pattern=FILE_NAME)):
        """Store a file (a G-buffer and its sidecar) for a client that does not share this file system."""
        data = await request.body()
        target = settings.files_folder / name
        write_bytes_atomic(target, data)
        return StoredFile(path=str(target), bytes=len(data))

    @app.get("/files/{name}", response_class=FileResponse, responses={
        **_errors(404), 200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    def download(name: str = PathParam(pattern=FILE_NAME)):
        """Fetch a file from the files folder (a rendered frame) for a client on another machine."""
        path = (settings.files_folder / name).resolve()  # a symlink must not lead out of the folder
        if not path.is_relative_to(settings.files_folder.resolve()) or not path.is_file():
            raise NotFound(f"no file {name!r} in the service's files folder")
        return FileResponse(path, media_type="application/octet-stream")

    def openapi_with_bearer():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_with_bearer
    return app
