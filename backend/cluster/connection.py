"""Connect the driver to a Ray cluster: `HOST:PORT` as `ray start --head` prints it, or `local[:N]`.

Ray reads its environment when it is imported, so `connect` sets it first:
- usage statistics off (a user's cluster does not report home unless they ask);
- for `local` and loopback heads, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which makes Ray bind every
  port to 127.0.0.1 instead of replacing 127.0.0.1 with the machine's network address;
- with a token file, RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH; a local cluster gets a fresh
  random token of its own (else Ray would write one to ~/.ray/auth_token, and every later
  `ray start --head` of the user would silently require it);
- RAY_NUM_REDIS_GET_RETRIES=6: a driver tries the head's GCS for about 6 s (Ray's default: 20),
  so a refused token or a port that is no Ray head fails fast too.
An unreachable address fails within seconds: a TCP probe first (ray.init itself retries for minutes),
then a watchdog on ray.init for a port that answers but is no Ray head.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from backend.errors import UserError

LOCAL = "local"
PROBE_TIMEOUT_S = 3.0
INIT_TIMEOUT_S = 15.0  # a last resort: GCS_CONNECT_TRIES ends ray.init's own retries well before
GCS_CONNECT_TRIES = 6  # about a second each
START_HINT = "start one with `ray start --head --port 6379` (docs/cluster.md) or use --cluster local"


@dataclass(frozen=True)
class ClusterAddress:
    host: str = ""  # empty: a throwaway local cluster
    port: int = 0
    local_workers: int = 1

    @property
    def is_local(self) -> bool:
        return not self.host

    @property
    def is_loopback(self) -> bool:
        if self.is_local or self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{LOCAL}:{self.local_workers}" if self.is_local else f"{self.host}:{self.port}"


def parse_address(text: str) -> ClusterAddress:
    """argparse type of --cluster: `local`, `local:N` or `HOST:PORT`."""
    head, _, tail = text.strip().rpartition(":")
    if text.strip() == LOCAL:
        return ClusterAddress()
    if head == LOCAL:
        if not tail.isdigit() or int(tail) < 1:
            raise ValueError(f"cluster {text!r}: local:N needs N >= 1 workers, e.g. local:2")
        return ClusterAddress(local_workers=int(tail))
    if not head or not tail.isdigit() or not 0 < int(tail) < 65536:
        raise ValueError(f"cluster {text!r} must be HOST:PORT as `ray start --head` prints it "
                         "(e.g. 10.0.0.5:6379), or local[:N]")
    return ClusterAddress(host=head.strip("[]"), port=int(tail))


def local_layout(workers: int) -> tuple[int, int]:
    """(logical CPUs of the local cluster, Cycles threads of each of its `workers` workers)."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    return workers * threads, threads


def ray_environment(address: ClusterAddress, token_file: str | None) -> dict[str, str]:
    env = {name: os.environ.get(name, default) for name, default in
           (("RAY_USAGE_STATS_ENABLED", "0"), ("RAY_NUM_REDIS_GET_RETRIES", str(GCS_CONNECT_TRIES)))}
    if address.is_local and not token_file:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    if address.is_loopback:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every Ray port on 127.0.0.1 (checked with ray 2.60)
    if token_file:
        path = os.path.abspath(token_file)
        try:
            with open(path) as stream:
                token = stream.read().strip()
        except OSError as exc:
            raise UserError(f"cluster token file {path!r} cannot be read ({exc.strerror}); "
                            "create it with `ray get-auth-token --generate`") from None
        if not token:
            raise UserError(f"cluster token file {path!r} is empty; "
                            "copy the head's token into it (`ray get-auth-token` on the head)")
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=path)
    return env


def probe(address: ClusterAddress, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise UserError unless something accepts TCP connections at the address."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"cannot reach a Ray cluster at {address} ({reason}); {START_HINT}, "
                        "or check the address and the firewall") from None


def _give_up(address: ClusterAddress, seconds: float) -> None:
    print(f"error: {address} accepts connections but no Ray head answered within {seconds:.0f} s; "
          f"check the port ({START_HINT})", file=sys.stderr, flush=True)
    os._exit(2)  # ray.init cannot be interrupted from another thread; nothing has been written yet


@contextmanager
def connect(address: ClusterAddress, token_file: str | None = None,
            init_timeout_s: float = INIT_TIMEOUT_S) -> Iterator:
    """Yield the `ray` module connected to the cluster; shut the connection down on exit."""
    os.environ.update(ray_environment(address, token_file))
    if not address.is_local:
        probe(address)
    import ray

    options = dict(logging_level=logging.ERROR, log_to_driver=False, namespace="neural-face")
    # A local cluster's sessions and logs go to a folder of this run, removed with it (Ray's
    # default, /tmp/ray, keeps every session). Short: Ray's socket paths must fit in 107 bytes.
    session_folder = tempfile.mkdtemp(prefix="nf-ray-", dir="/tmp" if os.name == "posix" else None) \
        if address.is_local else None
    watchdog = threading.Timer(init_timeout_s, _give_up, (address, init_timeout_s))
    watchdog.daemon = True
    watchdog.start()
    try:
        if address.is_local:
            ray.init(num_cpus=local_layout(address.local_workers)[0], include_dashboard=False,
                     _temp_dir=session_folder, **options)
        else:
            ray.init(address=f"{address.host}:{address.port}", **options)
    except ray.exceptions.AuthenticationError as exc:
        raise UserError(f"the Ray cluster at {address} refused this driver's token ({str(exc).splitlines()[0]}); "
                        "pass the head's token with --cluster-token-file") from None
    except (ConnectionError, RuntimeError) as exc:
        cause = f"{exc} {exc.__cause__}".lower()
        if "token" in cause or "authentication" in cause:
            hint = "the head requires an auth token (RAY_AUTH_MODE=token): pass the head's token with " \
                   "--cluster-token-file (`ray get-auth-token` on the head prints it)"
        else:
            hint = f"{str(exc).splitlines()[0]} (is the head's Ray version {ray.__version__}?)"
        raise UserError(f"cannot connect to the Ray cluster at {address}: {hint}") from None
    finally:
        watchdog.cancel()
    try:
        yield ray
    finally:
        ray.shutdown()
        if session_folder:
            shutil.rmtree(session_folder, ignore_errors=True)
