"""`python -m backend serve`: run the add-on's HTTP service (FastAPI + uvicorn), loopback only by default."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from backend.atomic import write_text_atomic
from backend.commands.generate import cluster_address
from backend.commands.argument_types import port_number, positive_int
from backend.errors import UserError


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1; reach a remote box through an SSH tunnel)")
    parser.add_argument("--port", type=port_number, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--token", help="bearer token clients must send (default: $NEURAL_FACE_TOKEN, "
                                        "else a new random one)")
    parser.add_argument("--token-file", type=Path, default=Path.home() / ".config" / "neural-face" / "token",
                        help="where the token is written, mode 0600 (default ~/.config/neural-face/token)")
    parser.add_argument("--allow", type=Path, action="append", default=[], metavar="DIR",
                        help="folder the service may read and write (repeatable; default the current folder)")
    parser.add_argument("--work-dir", type=Path, help="folder for frames and uploads (default a new temp folder)")
    parser.add_argument("--max-upload-mb", type=positive_int, default=512, help="largest file upload accepted (MiB)")
    parser.add_argument("--ready-file", type=Path,
                        help="write {\"url\", \"pid\"} as JSON here once listening (used by the add-on)")
    parser.add_argument("--parent-pid", type=int, metavar="PID",
                        help="stop (cancelling training) once process PID has gone; the add-on passes "
                             "Blender's, so a killed Blender leaves no service behind")
    parser.add_argument("--cluster", type=cluster_address, metavar="ADDRESS",
                        help="Ray cluster (HOST:PORT or local[:N]) that Generate Dataset requests render on; "
                             "requests cannot name another (docs/cluster.md)")
    parser.add_argument("--cluster-token-file", type=Path, metavar="FILE", help="the cluster head's auth token")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from None
    sock.listen(128)
    return sock


def _check_parent(pid: int) -> None:
    """Refuse at start a parent that is already gone: the service would stop at once."""
    from backend.watchdog import liveness

    try:
        liveness(pid)
    except ProcessLookupError:
        raise UserError(f"--parent-pid {pid}: no such process; the service stops when that process "
                        f"exits, so pass one that runs (the add-on passes Blender's)") from None
    except PermissionError as exc:
        raise UserError(f"--parent-pid {pid}: {exc}") from None


def _follow_parent(pid: int, server) -> None:
    """Shut the server down cleanly (lifespan shutdown cancels training) once process `pid` has gone."""
    from backend.watchdog import watch

    def parent_gone() -> None:
        print(f"parent process {pid} has gone; stopping the service", flush=True)
        server.should_exit = True  # uvicorn's main loop looks at this every 0.1 s

    try:
        watch(pid, parent_gone)
    except (ProcessLookupError, PermissionError):  # gone between the check at start and now
        parent_gone()


def run(args) -> int:
    if args.parent_pid is not None:
        _check_parent(args.parent_pid)
    # One OpenMP thread: the service shades beside Blender, and torch's second thread either spins
    # while it waits (a 256 px frame: 28 ms alone, 263 ms beside a busy process) or, told to wait
    # passively, sleeps and wakes for every small op (3x slower on an idle machine). With one thread
    # the 512 px preview shades in 112 ms instead of 242 (`make bench-preview`, idle: 272 ms a frame
    # instead of 483). Training jobs the service runs use one thread too. Set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import uvicorn

    from backend.service import Settings, create_app
    from backend.service.settings import TOKEN_ENV, write_token_file

    allowed = args.allow or [Path.cwd()]
    for folder in allowed:
        if not folder.is_dir():
            raise UserError(f"--allow {folder}: not a folder")
    token = args.token or os.environ.get(TOKEN_ENV)
    extra = {"token": token} if token else {}
    if args.work_dir:
        extra["work_folder"] = args.work_dir
    if args.cluster:
        extra.update(cluster=str(args.cluster), cluster_token_file=args.cluster_token_file)
    settings = Settings(host=args.host, port=args.port, allowed_folders=allowed,
                        max_upload_bytes=args.max_upload_mb * 1024 * 1024, **extra)
    write_token_file(args.token_file, settings.token)

    sock = _bind(settings.host, settings.port)  # bound before uvicorn starts, so port 0 is known
    port = sock.getsockname()[1]
    url_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{url_host}:{port}"
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {settings.host}, not loopback: anyone who can reach it and has the "
              f"token can read and write the allowed folders")
    print(f"Neural Face service at {url}")
    print(f"token written to {args.token_file} (send 'Authorization: Bearer <token>')")
    # Flushed: stdout is the add-on's log file, and the lines must come before any later ones.
    print("allowed folders: " + ", ".join(str(p) for p in settings.allowed_folders), flush=True)
    if args.ready_file:
        write_text_atomic(args.ready_file, json.dumps({"url": url, "pid": os.getpid()}))
    # A request still running after 5 s does not hold the shutdown (SIGTERM, --parent-pid) up.
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if args.parent_pid is not None:
        _follow_parent(args.parent_pid, server)
    server.run(sockets=[sock])
    return 0
