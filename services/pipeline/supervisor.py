"""Child processes for the services: started with the shared address map, watched through gRPC health,
stopped with SIGTERM (then SIGKILL). Children die with the supervisor (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime.processes import dying_with_parent, stop_process


class ServiceProcess:
    def __init__(
        self, name: str, address: str, env: Mapping[str, str], log_dir: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.address = address  # "" for a child with no gRPC server (the engine)
        self.args = args
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                dying_with_parent([sys.executable, "-m", "services.cli", self.name, *self.args]),
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    async def wait_serving(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(
            f"{self.name} not SERVING on {self.address} after {timeout_s}s; see {self.log_path}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        stop_process(self.proc, grace_s)
        self.proc = None
