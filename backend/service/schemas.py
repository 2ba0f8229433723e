"""Request and response bodies of the service, as documented in its OpenAPI description."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Absolute (POSIX or Windows; a relative path would depend on the service's cwd), no NUL byte.
ABSOLUTE_PATH = r"^(/|[A-Za-z]:[\\/])[^\x00]*$"
PathField = Field(min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                  description="absolute path inside the service's allowed folders")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    detail: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    hostname: str = Field(description="lets a client tell whether it shares this machine's file system")
    files_folder: str


class TrainRequest(Strict):
    dataset: str = PathField
    bank: str | None = Field(None, min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                             description="weight bank to write; default DATASET/bank.nfbank")
    report_dir: str | None = Field(None, min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                                   description="folder of the HTML report; default BANK_report next to the bank")
    steps: int | None = Field(None, ge=1, le=10_000_000, description="training steps; default the trainer's")
    overwrite: bool = Field(False, description="replace bank and report_dir even if this project did not write them")


class DatasetRequest(Strict):
    scene: str = Field(min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                       description="the .blend (or .obj) to render, inside the allowed folders")
    out: str = Field(min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                     description="dataset folder: created, or resumed when it holds this dataset")
    settings: dict[str, Any] = Field(description="dataset settings, in manifest.json's \"settings\" form")
    cluster: str | None = Field(None, max_length=300,
                                description="the cluster the client expects; must be the service's own")
    overwrite: bool = Field(False, description="replace a different dataset in out")


class DatasetStatus(BaseModel):
    id: str
    state: Literal["running", "done", "failed", "cancelled"]
    dataset: str
    done: int = Field(description="samples committed to the manifest, those of earlier runs included")
    total: int
    workers: int = Field(description="live cluster workers")
    error: str | None = Field(description="why the job failed, or what a cancelled job kept")


class Progress(BaseModel):
    step: int
    total_steps: int | None = Field(description="None when training is bounded by time")
    loss: float | None
    val_psnr: float | None
    elapsed_s: float
    eta_s: float | None
    phase: str


class JobStatus(BaseModel):
    id: str
    state: Literal["running", "reporting", "done", "failed", "cancelled"]
    dataset: str
    bank: str
    report: str | None = Field(description="the report's HTML file once written")
    progress: Progress | None
    metrics: dict[str, float] | None = Field(description="the report's headline numbers")
    error: str | None = Field(description="why the job failed, or what a job cancelled while reporting kept")


class RenderRequest(Strict):
    bank: str = PathField
    gbuffer: str = PathField
    renderer: Literal["auto", "torch", "emulated", "pycuda"] = "auto"
    out: str | None = Field(None, min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                            description="where to write the frame (.npy); default files_folder/frame.npy")
    overwrite: bool = Field(False, description="replace out even if it is not a frame this service wrote")


class PreviewCamera(Strict):
    matrix_world: list[list[float]] = Field(min_length=4, max_length=4, description="camera-to-world, rows")
    K: list[list[float]] = Field(min_length=3, max_length=3, description="pinhole intrinsics in pixels")
    position: list[float] = Field(min_length=3, max_length=3)


class PreviewLight(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the add-on sends whole light records (name, lightgroup, ...)
    position: list[float] = Field(min_length=3, max_length=3)
    color: list[float] = Field(min_length=3, max_length=3)
    power: float = Field(ge=0)
    radius: float = Field(ge=0)


class PreviewRequest(Strict):
    """One Neural Render Preview frame: the service traces the G-buffer (backend/tracer), then shades it."""

    bank: str = PathField
    mesh: str = Field(min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                      description="the evaluated target mesh (mesh.npz of docs/formats/scene.md)")
    albedo: str = Field(min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                        description="the baked albedo (albedo.npz of docs/formats/scene.md), e.g. DATASET/scene/albedo.npz")
    camera: PreviewCamera
    lights: list[PreviewLight] = Field(min_length=1, max_length=64)
    resolution: list[int] = Field(min_length=2, max_length=2, description="width, height in pixels")
    shadow_rays: int = Field(16, ge=4, le=1024, description="as the dataset's gbuffer_shadow_rays (a square)")
    renderer: Literal["auto", "torch", "emulated", "pycuda"] = "auto"
    out: str | None = Field(None, min_length=1, max_length=4096, pattern=ABSOLUTE_PATH,
                            description="where to write the frame (.npy), over the last one in place: read it "
                                        "before asking for the next; default files_folder/frame.npy")
    overwrite: bool = Field(False, description="replace out even if it is not a frame this service wrote")


class RenderTimings(BaseModel):
    read_s: float = Field(description="reading the G-buffer file")
    bank_s: float = Field(description="loading the bank and preparing the renderer (0 when cached)")
    shading_s: float = Field(description="the renderer alone")
    write_s: float = Field(description="writing the frame file")
    trace_s: float = Field(0.0, description="tracing the G-buffer (a /preview frame)")


class RenderResult(BaseModel):
    frame: str = Field(description="the frame: a float32 .npy of shape [H, W, 4], rows top to bottom")
    width: int
    height: int
    renderer: str
    timings: RenderTimings


class StoredFile(BaseModel):
    path: str
    bytes: int
