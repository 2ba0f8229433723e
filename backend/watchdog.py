"""Watch another process and act when it has gone: the service started by Blender follows Blender.

Blender stops the service it started when it quits, but a Blender killed outright (SIGKILL, a
crash) cannot; `python -m backend serve --parent-pid PID` polls PID instead and shuts down.
Standard library only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

POLL_S = 0.5


def liveness(pid: int) -> Callable[[], bool]:
    """A check that answers whether process `pid` still runs.

    Raises ProcessLookupError if no process `pid` runs now, PermissionError if it runs but cannot
    be watched (Windows only).
    """
    if pid <= 0:  # os.kill(0 or -N, 0) would ask about a process group, which always "exists"
        raise ProcessLookupError(pid)
    check = _windows_liveness(pid) if os.name == "nt" else _posix_liveness(pid)
    if not check():
        raise ProcessLookupError(pid)
    return check


def _posix_liveness(pid: int) -> Callable[[], bool]:
    # A dead parent is no longer ours: the child is re-parented at once, even while the dead
    # process lingers as a zombie that os.kill(pid, 0) still finds, or its pid is reused.
    was_parent = os.getppid() == pid

    def alive() -> bool:
        if was_parent and os.getppid() != pid:
            return False
        try:
            os.kill(pid, 0)  # signal 0: checks existence and permission, sends nothing
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it runs, under another user
        return True

    return alive


def _windows_liveness(pid: int) -> Callable[[], bool]:
    # Untested here (the project's tests run on Linux). The handle stays open while watching,
    # so Windows cannot hand the pid to a new process after this one exits.
    import ctypes
    from ctypes import wintypes

    synchronize, wait_timeout, error_access_denied = 0x00100000, 0x102, 5
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
    kernel32.WaitForSingleObject.restype = wintypes.DWORD
    handle = kernel32.OpenProcess(synchronize, False, pid)
    if not handle:
        if ctypes.get_last_error() == error_access_denied:
            raise PermissionError(f"process {pid} runs but may not be watched")
        raise ProcessLookupError(pid)
    return lambda: kernel32.WaitForSingleObject(handle, 0) == wait_timeout


def watch(pid: int, on_gone: Callable[[], None], poll_s: float = POLL_S) -> threading.Thread:
    """Call `on_gone()` once, from a daemon thread, within `poll_s` after process `pid` has gone.

    Raises ProcessLookupError at once if it is not running now (see `liveness`).
    """
    alive = liveness(pid)

    def loop() -> None:
        while alive():
            time.sleep(poll_s)
        on_gone()

    thread = threading.Thread(target=loop, name=f"watch-{pid}", daemon=True)
    thread.start()
    return thread
