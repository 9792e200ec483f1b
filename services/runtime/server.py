"""The grpc.aio server every service runs: health (NOT_SERVING until dependencies answer), reflection,
interceptors, and graceful shutdown on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from services.runtime.interceptors import ServerInterceptor

log = logging.getLogger("tapewatch.server")

HealthCheck = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Registration:
    """One gRPC service to mount: its full name (from the generated DESCRIPTOR) and how to add it."""

    full_name: str
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


class GrpcServer:
    """Starts, watches dependencies and stops one service's gRPC server.

    Each health check is an awaitable that raises (or times out) while its dependency is down; the
    health status of every mounted service follows them without a restart.
    """

    def __init__(
        self,
        label: str,
        address: str,
        services: Sequence[Registration],
        checks: dict[str, HealthCheck] | None = None,
        health_interval_s: float = 0.5,
        check_timeout_s: float = 1.0,
    ) -> None:
        self.label = label
        self.address = address
        self.services = list(services)
        self.checks = dict(checks or {})
        self.health_interval_s = health_interval_s
        self.check_timeout_s = check_timeout_s
        self.health = health_aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.serving: bool | None = None
        self.failing: dict[str, str] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> int:
        server = grpc.aio.server(
            interceptors=[ServerInterceptor(self.label)],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 8 * 1024 * 1024)],
        )
        for reg in self.services:
            reg.add(reg.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [reg.full_name for reg in self.services]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
        self.port = server.add_insecure_port(self.address)
        if self.port == 0:
            raise RuntimeError(f"{self.label}: cannot bind {self.address}")
        await self._set_serving(False)
        await server.start()
        self.server = server
        await self.check_once()
        gc.freeze()  # start-up objects (modules, protos, models) are never garbage: keep GC passes short
        self._watch = asyncio.create_task(self._watch_dependencies(), name=f"{self.label}-health")
        log.info("%s listening", self.label, extra={"address": self.address, "port": self.port})
        return self.port

    async def _set_serving(self, serving: bool) -> None:
        if serving == self.serving:
            return
        self.serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *(reg.full_name for reg in self.services)]:
            await self.health.set(name, status)
        if serving:
            log.info("%s SERVING", self.label)
        else:
            log.warning("%s NOT_SERVING", self.label, extra={"failing": self.failing})

    async def check_once(self) -> bool:
        failing: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                async with asyncio.timeout(self.check_timeout_s):  # not wait_for: it can swallow a cancel
                    await check()
            except Exception as exc:  # any failure means the dependency is not usable
                failing[name] = f"{type(exc).__name__}: {exc}"
        self.failing = failing
        await self._set_serving(not failing)
        return not failing

    async def _watch_dependencies(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            await self.check_once()

    async def stop(self, grace: float = 5.0) -> None:
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.server:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)
            self.server = None
        log.info("%s stopped", self.label)


async def wait_for_shutdown_signal(extra: asyncio.Event | None = None) -> None:
    """Return on SIGTERM or SIGINT (or when `extra` is set)."""
    stop = extra or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
