"""A real Ray head on 127.0.0.1 for the tests, and the processes that belong to it.

Every Ray process of the test cluster binds to loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in
the head's, the workers' and the drivers' environment) and sends no usage statistics; it requires
a token (RAY_AUTH_MODE=token), which drivers pass with --cluster-token-file TOKEN_FILE. The head
runs `ray start --block`, so a SIGTERM to that one process stops the cluster; the processes it
started carry MARKER in their environment, so leftovers are found and killed by pid.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = "NF_TEST_RAY_CLUSTER"
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
RAY = str(Path(sys.executable).with_name("ray"))


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_env(marker: str, token_file: str) -> dict[str, str]:
    return {**os.environ, **RAY_ENV, MARKER: marker, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_file}


def marked_processes(marker: str) -> dict[int, str]:
    """pid -> command line of every process that carries this cluster's marker."""
    found = {}
    needle = f"{MARKER}={marker}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


class RayNode:
    """One `ray start --head --block` process: a one-node cluster (Ray refuses a second node on loopback)."""

    def __init__(self, num_cpus: int, extra_env: dict | None = None, timeout: float = 60):
        self.marker = tempfile.mkdtemp(prefix="nfray-", dir="/tmp")  # short: Ray's socket paths are limited
        self.token_file = os.path.join(self.marker, "token")
        Path(self.token_file).write_text(secrets.token_hex(32))
        port = free_loopback_port()
        self.address = f"127.0.0.1:{port}"
        command = [RAY, "start", "--head", "--port", str(port), "--temp-dir", self.marker, "--include-dashboard=false",
                   "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--disable-usage-stats", "--block"]
        self.log = open(Path(self.marker) / "ray_start.log", "w+")
        self.process = subprocess.Popen(command, env={**ray_env(self.marker, self.token_file), **(extra_env or {})},
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "This command will now block" not in Path(self.log.name).read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray start failed:\n{Path(self.log.name).read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 10
        while marked_processes(self.marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in marked_processes(self.marker):  # whatever the head left: ours, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        shutil.rmtree(self.marker, ignore_errors=True)
