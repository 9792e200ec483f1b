"""`tapewatch run` (what `make run` starts) as a user runs it: real processes, real news, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.runtime.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(TAPEWATCH_DATA_DIR=str(tmp_path / "data"), TAPEWATCH_INGEST_ADDR=f"127.0.0.1:{free_port()}")
    return env


def tapewatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def test_run_replays_real_news_into_the_raw_stream(tmp_path: Path) -> None:
    done = subprocess.run(
        tapewatch("run", "--only-ingest", "--limit", "60", "--duration", "1", "--exit-after-replay"),
        env=run_env(tmp_path), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary sent 60  accepted 60  duplicates 0  rejected 0  news.raw length 60" in done.stdout
    assert "stopped: services and Redis Stack" in done.stdout
    assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()  # AOF persistence under the data folder


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    env = run_env(tmp_path)
    proc = subprocess.Popen(
        tapewatch("run", "--only-ingest", "--limit", "500", "--duration", "120"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("replaying") or time.monotonic() > deadline:
            break
    assert any(line.startswith("replaying") for line in seen), "".join(seen)
    redis_port = int("".join(seen).split("redis://127.0.0.1:")[1].split("/")[0])
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    rest = proc.communicate(timeout=60)[0]
    assert "stopped: services and Redis Stack" in rest
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of the run is left
    for port in (redis_port, int(env["TAPEWATCH_INGEST_ADDR"].rsplit(":", 1)[1])):
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
