"""Child processes the services start (Redis Stack, the model server, the services themselves): they die
with their parent, and stop with SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import shutil
import subprocess


def dying_with_parent(args: list[str]) -> list[str]:
    """`args` run so that the child gets SIGTERM when this process dies: util-linux's setpriv sets
    PR_SET_PDEATHSIG, then execs them. Not a preexec_fn: that makes Popen fork the whole parent instead of
    vfork, gRPC's fork handlers run in the child, and with gRPC threads busy the child can abort before it
    execs (seen as a service exiting with -6 at start)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("setpriv (util-linux) is needed to tie child processes to their parent")
    return [setpriv, "--pdeathsig", "TERM", "--", *args]


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
