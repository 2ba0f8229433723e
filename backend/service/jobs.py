"""Training jobs run in a background thread of the service: train, then write the report.

One job at a time (training already uses every core); progress and cancellation go through
`backend.training.train`'s `on_progress` and `should_stop` hooks, and `write_report`'s `should_stop`.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.errors import UserError


class JobConflict(Exception):
    """A training job is already running (answered with 409)."""


@dataclass
class TrainingJob:
    KIND = "training"
    dataset: Path
    bank: Path
    report_dir: Path
    steps: int | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "running"
    progress: dict | None = None
    report: str | None = None
    metrics: dict | None = None
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        return {
            "id": self.id, "state": self.state, "dataset": str(self.dataset), "bank": str(self.bank),
            "report": self.report, "progress": self.progress, "metrics": self.metrics, "error": self.error,
        }

    def run(self) -> None:
        from backend.report import ReportCancelled, write_report
        from backend.training import TrainConfig, train

        try:
            config = TrainConfig(data=str(self.dataset), out=str(self.bank), steps=self.steps)
            result = train(config, on_progress=self._on_progress, should_stop=self.stop.is_set)
            if result.cancelled:
                self.state = "cancelled"
                return
            self.state = "reporting"
            metrics = write_report(self.bank, self.dataset, self.report_dir, should_stop=self.stop.is_set)
            self.metrics = headline(metrics["headline"])
            self.report = str(self.report_dir / "index.html")
            self.state = "done"
        except ReportCancelled:  # the bank is complete; only the report is given up
            self.error = f"cancelled while writing the report; the bank is kept at {self.bank}"
            self.state = "cancelled"
        except UserError as exc:
            self.error, self.state = str(exc), "failed"
        except Exception as exc:  # a bug must still end the job visibly, not kill the thread silently
            traceback.print_exc()
            self.error, self.state = f"internal error: {exc!r}", "failed"

    def _on_progress(self, progress) -> None:
        self.progress = {k: _finite_or_none(v) for k, v in asdict(progress).items()}


def _finite_or_none(value):
    """JSON has no NaN: the trainer reports loss NaN before its first step."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def headline(metrics: dict) -> dict[str, float]:
    """The report's finite scalar numbers, the ones a panel can show."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Jobs:
    def __init__(self):
        self._jobs: dict[str, TrainingJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, job: TrainingJob) -> TrainingJob:
        with self._lock:
            busy = [j for j in self._jobs.values() if j.state in ("running", "reporting")]
            if busy:
                raise JobConflict(f"{busy[0].KIND} job {busy[0].id} is still running; cancel it or wait")
            self._jobs[job.id] = job
            thread = self._threads[job.id] = threading.Thread(target=job.run, name=f"train-{job.id}", daemon=True)
            thread.start()
        return job

    def get(self, job_id: str) -> TrainingJob | None:
        return self._jobs.get(job_id)

    def cancel_all(self, wait_s: float = 0.0) -> list[TrainingJob]:
        """Stop every job and wait up to `wait_s` for their threads, so that a stopping service leaves a
        checkpoint and no temporary report folder behind; returns the jobs that were still running."""
        running = [job for job in self._jobs.values() if job.state in ("running", "reporting")]
        for job in self._jobs.values():
            job.stop.set()
        deadline = time.monotonic() + wait_s
        for job in running:
            self._threads[job.id].join(max(deadline - time.monotonic(), 0))
        return running
