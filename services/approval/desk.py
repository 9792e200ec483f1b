"""The approval desk: admits pending signals, takes trader decisions, expires what nobody decided, and
fans the audit log out to every open watcher (gRPC WatchPending, console event streams)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from services.approval.auth import Identity
from services.approval.caps import EditCaps, EditRefused, apply_edits
from services.approval.feedback import example
from services.approval.settings import ApprovalSettings
from services.approval.store import (
    EVENT_APPROVED,
    EVENT_EXPIRED,
    EVENT_NEW,
    EVENT_REJECTED,
    AuditEvent,
    Outcome,
    SignalStore,
    StoredSignal,
)
from services.approval.views import audit_summary
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from services.runtime.streams import Message, Reject
from services.runtime.telemetry import extract, inject
from tapewatch.approval.v1 import approval_pb2

log = logging.getLogger("tapewatch.approval")
tracer = trace.get_tracer("tapewatch.approval")
outcomes = metrics.get_meter("tapewatch.approval").create_counter(
    "tapewatch.approval.signals", description="signals by outcome: pending, approved, rejected, expired"
)

EXPIRY_ACTOR = "system:expiry"
ADMIT_ACTOR = "analysis"
MAX_REASON = 500
APPROVING = {approval_pb2.ACTION_APPROVE, approval_pb2.ACTION_MODIFY}
REJECTING = {
    approval_pb2.ACTION_REJECT,
    approval_pb2.ACTION_MARK_DUPLICATE,
    approval_pb2.ACTION_MARK_WRONG_DIRECTION,
}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def already_decided(signal_id: str, state: str, actor: str, at_ms: int) -> str:
    if state == "EXPIRED":
        return f"signal {signal_id} expired at {iso(at_ms)} before anyone decided"
    return f"signal {signal_id} was already {state.lower()} by {actor} at {iso(at_ms)}"


class ApprovalDesk:
    def __init__(
        self, store: SignalStore, settings: ApprovalSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.expiry_ms = int(settings.expiry_s * 1000)
        self.sweep_interval_s = settings.sweep_interval_s
        self.caps = EditCaps(
            settings.max_widening_bps,
            settings.max_skew_bps,
            settings.max_horizon_minutes,
            settings.max_vol_multiplier,
        )
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def admit(self, message: Message) -> None:
        """Stream handler for signals.pending: store the signal as pending with its expiry (idempotent)."""
        try:
            signal = approval_pb2.Signal.FromString(message.data)
        except DecodeError as exc:
            raise Reject(f"not a tapewatch.approval.v1.Signal: {exc}") from None
        signal.id = signal.id or message.key
        if not signal.id:
            raise Reject("signal has no id and the message no key")
        now = self.now_ms()
        if not signal.HasField("created_at"):
            signal.created_at.FromMilliseconds(now)
        expires = signal.created_at.ToMilliseconds() + self.expiry_ms
        if not signal.HasField("expires_at") or signal.expires_at.ToMilliseconds() > expires:
            signal.expires_at.FromMilliseconds(expires)
        signal.state = approval_pb2.SIGNAL_STATE_PENDING
        signal.ClearField("decision")
        carrier = message.trace_carrier
        if not signal.trace_id and carrier.get("traceparent", "").count("-") == 3:
            signal.trace_id = carrier["traceparent"].split("-")[1]
        if await self.store.admit(signal, carrier, audit_summary(signal), ADMIT_ACTOR, now):
            outcomes.add(1, {"outcome": "pending"})
            log.info("signal pending", extra={"signal_id": signal.id, "expires_at": iso(expires)})

    async def decide(self, identity: Identity, request: approval_pb2.DecideRequest) -> approval_pb2.Signal:
        identity.require_trader("decide")
        if not request.signal_id:
            raise InvalidArgument("signal_id is required")
        if request.action not in APPROVING | REJECTING:
            raise InvalidArgument(
                f"action must be one of APPROVE, REJECT, MODIFY, MARK_DUPLICATE, "
                f"MARK_WRONG_DIRECTION (got {request.action})"
            )
        if len(request.reason) > MAX_REASON:
            raise InvalidArgument(f"reason is longer than {MAX_REASON} characters")
        if request.modified and request.action != approval_pb2.ACTION_MODIFY:
            raise InvalidArgument("modified adjustments are only for ACTION_MODIFY")
        stored = await self.store.get(request.signal_id)
        if stored is None:
            raise NotFound(f"no signal {request.signal_id}")
        if stored.state != "PENDING":
            raise FailedPrecondition(
                already_decided(request.signal_id, stored.state, stored.actor, stored.decided_ms)
            )
        proposed = stored.signal
        after = approval_pb2.Signal()
        after.CopyFrom(proposed)
        edits: list[dict[str, Any]] = []
        if request.action == approval_pb2.ACTION_MODIFY:
            try:
                approved, edits = apply_edits(list(proposed.adjustments), list(request.modified), self.caps)
            except EditRefused as exc:
                raise InvalidArgument(str(exc)) from None
            del after.adjustments[:]
            after.adjustments.extend(approved)
        now = self.now_ms()
        approving = request.action in APPROVING
        after.state = approval_pb2.SIGNAL_STATE_APPROVED if approving else approval_pb2.SIGNAL_STATE_REJECTED
        decision = after.decision
        decision.signal_id = request.signal_id
        decision.action = request.action
        decision.trader = identity.name
        decision.reason = request.reason
        edited = {m.asset for m in request.modified}
        decision.modified.extend(a for a in after.adjustments if a.asset in edited)
        decision.decided_at.FromMilliseconds(now)
        outcome = await self._move(
            stored,
            after,
            mode="decide",
            now_ms=now,
            actor=identity.name,
            event=EVENT_APPROVED if approving else EVENT_REJECTED,
            publish_approved=approving,
            feedback=example(proposed, after, edits),
        )
        if outcome.status == "late":
            raise FailedPrecondition(
                f"signal {request.signal_id} expired at {iso(outcome.at_ms)}: too late to decide"
            )
        if outcome.status == "done":
            raise FailedPrecondition(
                already_decided(request.signal_id, outcome.state, outcome.actor, outcome.at_ms)
            )
        if outcome.status != "ok":
            raise NotFound(f"no signal {request.signal_id}")
        outcomes.add(1, {"outcome": "approved" if approving else "rejected"})
        log.info(
            "signal decided",
            extra={
                "signal_id": after.id,
                "trader": identity.name,
                "action": approval_pb2.Action.Name(request.action),
            },
        )
        return after

    async def _move(self, stored: StoredSignal, after: approval_pb2.Signal, **kw: Any) -> Outcome:
        """Run the atomic move inside a span that continues the signal's own trace (linked to the
        caller's span), so signals.approved carries the trace from ingest on to quoting."""
        caller = trace.get_current_span().get_span_context()
        links = [trace.Link(caller)] if caller.is_valid else []
        name = "approval.expire" if kw["mode"] == "expire" else "approval.decide"
        token = otel_context.attach(extract(stored.carrier))
        try:
            with tracer.start_as_current_span(
                name,
                kind=SpanKind.PRODUCER,
                links=links,
                attributes={"tapewatch.signal_id": after.id, "tapewatch.service": "approval"},
            ):
                carrier: dict[str, str] = {}
                inject(carrier)
                return await self.store.transition(
                    after,
                    before_doc=audit_summary(stored.signal),
                    after_doc=audit_summary(after),
                    carrier=carrier,
                    **kw,
                )
        finally:
            otel_context.detach(token)

    async def expire_due(self) -> int:
        """Expire every pending signal past its expiry; returns how many this call expired."""
        now = self.now_ms()
        expired = 0
        for signal_id in await self.store.due(now):
            stored = await self.store.get(signal_id)
            if stored is None:
                continue
            after = approval_pb2.Signal()
            after.CopyFrom(stored.signal)
            after.state = approval_pb2.SIGNAL_STATE_EXPIRED
            outcome = await self._move(
                stored, after, mode="expire", now_ms=now, actor=EXPIRY_ACTOR, event=EVENT_EXPIRED
            )
            if outcome.status == "ok":
                expired += 1
                outcomes.add(1, {"outcome": "expired"})
                log.info("signal expired", extra={"signal_id": signal_id})
        return expired

    async def run_expiry(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.expire_due()
            except (RedisError, OSError) as exc:
                log.warning("expiry sweep failed (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.sweep_interval_s)


class Fanout:
    """Hands each published item to every subscribed queue. A subscriber that falls more than `limit`
    items behind is dropped and gets None, so a stuck browser can't hold memory."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.queues: set[asyncio.Queue[Any]] = set()

    def publish(self, item: Any) -> None:
        for queue in list(self.queues):
            if queue.qsize() >= self.limit:
                self.queues.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(item)

    @contextlib.asynccontextmanager
    async def subscribe(self, queue: asyncio.Queue[Any] | None = None) -> AsyncIterator[asyncio.Queue[Any]]:
        queue = queue if queue is not None else asyncio.Queue()
        self.queues.add(queue)
        try:
            yield queue
        finally:
            self.queues.discard(queue)


class AuditFeed(Fanout):
    """One reader of tw:approval:audit per process; every event goes to every subscriber, in order."""

    def __init__(self, store: SignalStore, block_ms: int = 1000) -> None:
        super().__init__()
        self.store = store
        self.block_ms = block_ms

    async def run(self, stop: asyncio.Event) -> None:
        last = await self.store.audit_tail_id()
        while not stop.is_set():
            try:
                events = await self.store.read_audit(last, self.block_ms)
            except (RedisError, OSError) as exc:
                log.warning("audit feed: redis unavailable (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for event in events:
                last = event.entry_id
                self.publish(event)


KINDS = {
    EVENT_NEW: approval_pb2.SignalEvent.KIND_NEW,
    EVENT_APPROVED: approval_pb2.SignalEvent.KIND_DECIDED,
    EVENT_REJECTED: approval_pb2.SignalEvent.KIND_DECIDED,
    EVENT_EXPIRED: approval_pb2.SignalEvent.KIND_EXPIRED,
}


def signal_event(event: AuditEvent) -> approval_pb2.SignalEvent | None:
    kind = KINDS.get(event.event)
    if kind is None or event.signal is None:
        return None
    return approval_pb2.SignalEvent(kind=kind, signal=event.signal)
