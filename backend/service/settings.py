"""What a service instance may do: where it listens, its token, the folders it may touch, its limits."""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "NEURAL_FACE_TOKEN"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Every path a request names must resolve inside one of these folders (symlinks resolved first).
    allowed_folders: list[Path] = field(default_factory=list)
    # Holds the frames the service renders and the files it receives; always allowed. Default: a
    # temporary folder, removed when the service stops.
    work_folder: Path | None = None
    max_json_bytes: int = 64 * 1024
    # The Ray cluster Generate Dataset requests render on (docs/cluster.md); None: the service renders none.
    cluster: str | None = None
    cluster_token_file: Path | None = None
    max_upload_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        self.temporary_work_folder = self.work_folder is None
        if self.temporary_work_folder:
            self.work_folder = Path(tempfile.mkdtemp(prefix="neural-face-service-"))
        self.work_folder = Path(self.work_folder).resolve()
        self.work_folder.mkdir(parents=True, exist_ok=True)
        self.allowed_folders = [Path(p).resolve() for p in self.allowed_folders]
        if self.work_folder not in self.allowed_folders:
            self.allowed_folders.append(self.work_folder)

    @property
    def files_folder(self) -> Path:
        """Frames rendered without an explicit output path, and uploads (for a service on another machine)."""
        return self.work_folder / "files"


def write_token_file(path: Path, token: str) -> None:
    """Write the token readable by its owner only (0600 from creation, never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
