"""ApprovalService (gRPC) and the approval process: pending-signal consumer, expiry sweeper, audit feed,
gRPC server and trader console, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import redis.asyncio as aioredis

from services.approval.auth import Accounts, Identity, Sessions, identify_call
from services.approval.desk import ApprovalDesk, AuditFeed, signal_event
from services.approval.settings import ApprovalSettings
from services.approval.store import SignalStore
from services.console.app import Console
from services.runtime.errors import Unavailable
from services.runtime.logs import setup_logging
from services.runtime.redis_client import open_redis
from services.runtime.server import GrpcServer, Registration, wait_for_shutdown_signal
from services.runtime.streams import StreamConsumer
from services.runtime.telemetry import setup_telemetry
from tapewatch.approval.v1 import approval_pb2, approval_pb2_grpc

log = logging.getLogger("tapewatch.approval")
SERVICE_NAME = approval_pb2.DESCRIPTOR.services_by_name["ApprovalService"].full_name


class ApprovalServicer(approval_pb2_grpc.ApprovalServiceServicer):
    """Every call needs `authorization: Bearer <token>`; Decide needs the trader role."""

    def __init__(self, desk: ApprovalDesk, sessions: Sessions, feed: AuditFeed) -> None:
        self.desk = desk
        self.store = desk.store
        self.sessions = sessions
        self.feed = feed

    async def _caller(self, context: grpc.aio.ServicerContext) -> Identity:
        metadata = {k: v for k, v in (context.invocation_metadata() or ())}
        return await identify_call(self.sessions, metadata)

    async def ListPending(
        self, request: approval_pb2.ListPendingRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.ListPendingResponse:
        await self._caller(context)
        return approval_pb2.ListPendingResponse(signals=await self.store.pending())

    async def WatchPending(
        self, request: approval_pb2.WatchPendingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[approval_pb2.SignalEvent]:
        """One KIND_SNAPSHOT event per pending signal, then every change as it happens."""
        await self._caller(context)
        async with self.feed.subscribe() as queue:
            snapshot = await self.store.pending()
            known = {s.id for s in snapshot}
            for signal in snapshot:
                yield approval_pb2.SignalEvent(kind=approval_pb2.SignalEvent.KIND_SNAPSHOT, signal=signal)
            while True:
                item = await queue.get()
                if item is None:
                    raise Unavailable("the watch fell behind or the service is stopping; watch again")
                event = signal_event(item)
                if event is None:
                    continue
                if event.kind == approval_pb2.SignalEvent.KIND_NEW and event.signal.id in known:
                    continue  # already sent in the snapshot
                known.discard(event.signal.id)
                yield event

    async def Decide(
        self, request: approval_pb2.DecideRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.DecideResponse:
        identity = await self._caller(context)
        return approval_pb2.DecideResponse(signal=await self.desk.decide(identity, request))


class ApprovalApp:
    """Everything one approval process runs. Several processes may share one Redis: transitions are
    atomic, the consumer group splits signals.pending, and every console sees every event."""

    def __init__(
        self, settings: ApprovalSettings, redis: aioredis.Redis, consumer: str | None = None
    ) -> None:
        self.settings = settings
        self.store = SignalStore(
            redis,
            settings.approved_stream,
            settings.history_size,
            settings.decided_ttl_s,
            settings.approved_maxlen,
        )
        self.accounts = Accounts(redis, settings)
        self.sessions = Sessions(redis, settings)
        self.desk = ApprovalDesk(self.store, settings)
        self.feed = AuditFeed(self.store)
        self.consumer = StreamConsumer(
            redis,
            settings.pending_stream,
            settings.consumer_group,
            consumer or f"{socket.gethostname()}-{os.getpid()}",
            self.desk.admit,
            label="approval",
            block_ms=1000,
        )
        self.grpc = GrpcServer(
            "approval",
            settings.listen,
            [
                Registration(
                    SERVICE_NAME,
                    approval_pb2_grpc.add_ApprovalServiceServicer_to_server,
                    ApprovalServicer(self.desk, self.sessions, self.feed),
                )
            ],
            checks={"redis": redis.ping},
        )
        self.console = Console(settings, self.desk, self.store, self.feed, self.accounts, self.sessions)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.consumer.ensure_group()
        for name, run in (
            ("audit-feed", self.feed.run),
            ("pending-consumer", self.consumer.run),
            ("expiry", self.desk.run_expiry),
        ):
            self._tasks.append(asyncio.create_task(self._keep_running(name, run), name=f"approval-{name}"))
        await self.grpc.start()
        await self.console.start()

    async def _keep_running(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        while not self._stop.is_set():
            try:
                await run(self._stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("approval %s failed; restarting in 1 s", name)
                await asyncio.sleep(1)

    async def stop(self) -> None:
        self._stop.set()
        await self.console.stop()
        await self.grpc.stop(self.settings.shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def grpc_port(self) -> int:
        return self.grpc.port

    @property
    def console_port(self) -> int:
        return self.console.port


async def serve(settings: ApprovalSettings, stop: asyncio.Event | None = None) -> None:
    setup_logging("approval", settings.log_level, settings.log_format)
    setup_telemetry("approval", settings.otel_exporter, settings.otel_endpoint)
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        app = ApprovalApp(settings, redis)
        await app.start()
        log.info(
            "approval ready",
            extra={"grpc": settings.listen, "console": f"http://{settings.console_host}:{app.console_port}/"},
        )
        try:
            await wait_for_shutdown_signal(stop)
        finally:
            await app.stop()
