"""The model server as a child process on free ports (tests, benchmarks): start, wait till it serves, stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from services.runtime.processes import dying_with_parent, stop_process


class ModelServerProcess:
    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.ready_file = workdir / "model-server.ready.json"
        self.log_path = workdir / "model-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.grpc_url = ""
        self.http_url = ""

    def start(self, timeout_s: float = 240.0) -> ModelServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        ports = ["--grpc-port", "0", "--http-port", "0", "--metrics-port", "0"]
        args = [sys.executable, "-m", "services.model_server", *ports, "--ready-file", str(self.ready_file)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                dying_with_parent(args), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"model server did not start (see {self.log_path}):\n{tail}")
            time.sleep(0.2)
        ports_found = json.loads(self.ready_file.read_text())
        self.grpc_url = f"127.0.0.1:{ports_found['grpc_port']}"
        self.http_url = f"127.0.0.1:{ports_found['http_port']}"
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        stop_process(self.proc, grace_s)
        self.proc = None

    def __enter__(self) -> ModelServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
