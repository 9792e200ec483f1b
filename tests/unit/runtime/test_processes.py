"""Children die with the process that started them, without a preexec_fn (which forks the whole parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PARENT = """
import subprocess, sys, time
from services.runtime.processes import dying_with_parent
child = subprocess.Popen(dying_with_parent([sys.executable, "-c", "import time; time.sleep(120)"]))
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"  # a zombie has exited


def test_a_child_gets_sigterm_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    # setpriv sets the death signal, then execs the command under the same pid: wait for that exec (a
    # parent killed in the microseconds before it leaves its child running, as with any pdeathsig).
    python = os.path.realpath(sys.executable)
    deadline = time.monotonic() + 5
    while os.path.realpath(f"/proc/{child}/exe") != python and time.monotonic() < deadline:
        time.sleep(0.01)
    assert alive(child) and os.path.realpath(f"/proc/{child}/exe") == python
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
