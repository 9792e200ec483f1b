"""Child processes the services start (Redis Stack, the model server, the services themselves): they die
with their parent, and stop with SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import ctypes
import signal
import subprocess


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
