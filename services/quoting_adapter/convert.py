"""Between the wire (protobuf, Redis JSON) and the quoting model's types, validating on the way in."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from quoting.adjustments import DecayKind, QuoteAdjustment, QuoteOverride, SignalAdjustment
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.quoting.v1 import quoting_pb2

_TICKER = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")


class BadInput(ValueError):
    """Input that can never be applied; the message says why."""


def asset_name(raw: str) -> str:
    """The canonical ticker: trimmed, upper case; raises BadInput when empty or not a ticker."""
    asset = raw.strip().upper()
    if not asset:
        raise BadInput("asset is empty")
    if not _TICKER.fullmatch(asset):
        raise BadInput(f"asset {raw!r} is not a ticker (letters, digits, '.', '_', '-'; at most 32)")
    return asset


def finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise BadInput(f"{name} must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class DecayPolicy:
    kind: DecayKind
    half_life_fraction: float  # of the horizon, for exponential decay
    max_horizon: timedelta


def signal_adjustments(
    signal: approval_pb2.Signal, started_at: datetime, policy: DecayPolicy
) -> list[SignalAdjustment]:
    """One SignalAdjustment per asset of an approved signal, full strength at started_at.

    `adjustments` are as approved (a modified approval already carries the edits there; its
    `decision.modified` lists only the edited assets). The skew's sign follows the approved direction
    (bearish: down, bullish: up, unclear: no skew); an unset vol multiplier is 1.
    """
    if not signal.id:
        raise BadInput("signal has no id")
    if signal.state != approval_pb2.SIGNAL_STATE_APPROVED:
        try:
            state = approval_pb2.SignalState.Name(signal.state)
        except ValueError:
            state = str(signal.state)
        raise BadInput(f"signal {signal.id} is {state}, not APPROVED")
    if not signal.adjustments:
        raise BadInput(f"signal {signal.id} has no adjustments")
    out: list[SignalAdjustment] = []
    for a in signal.adjustments:
        asset = asset_name(a.asset)
        if any(s.asset == asset for s in out):
            raise BadInput(f"signal {signal.id} adjusts {asset} twice")
        longest = policy.max_horizon // timedelta(minutes=1)
        if not 1 <= a.horizon_minutes <= longest:
            raise BadInput(f"{asset}: horizon_minutes must be in 1..{longest}, got {a.horizon_minutes}")
        widening = finite(f"{asset}: widening_bps", a.widening_bps)
        if widening < 0:
            raise BadInput(f"{asset}: widening_bps must be >= 0, got {widening}")
        skew = abs(finite(f"{asset}: skew_bps", a.skew_bps))
        if a.direction == analysis_pb2.DIRECTION_BEARISH:
            skew = -skew
        elif a.direction == analysis_pb2.DIRECTION_UNCLEAR:
            skew = 0.0
        elif a.direction != analysis_pb2.DIRECTION_BULLISH:
            skew = a.skew_bps  # unspecified: as recommended
        multiplier = finite(f"{asset}: vol_multiplier", a.vol_multiplier) or 1.0
        if multiplier < 1:
            raise BadInput(f"{asset}: vol_multiplier must be >= 1, got {multiplier}")
        horizon = timedelta(minutes=a.horizon_minutes)
        out.append(
            SignalAdjustment(
                signal_id=signal.id,
                asset=asset,
                widening_bps=widening,
                skew_bps=skew,
                vol_multiplier=multiplier,
                started_at=started_at,
                horizon=horizon,
                decay=policy.kind,
                half_life=horizon * policy.half_life_fraction if policy.kind == "exponential" else None,
            )
        )
    return out


def started_at(signal: approval_pb2.Signal, published: datetime, now: datetime) -> datetime:
    """When the signal takes full effect: its approval time (else its publication), never later than now.

    Derived from the message, not from the time it is read, so a redelivery cannot restart the decay.
    """
    decided = signal.decision.decided_at
    start = decided.ToDatetime(tzinfo=UTC) if decided.seconds or decided.nanos else published
    return min(start, now)


# Redis JSON


def adjustment_json(a: SignalAdjustment, **meta: object) -> bytes:
    doc = {
        "signal_id": a.signal_id,
        "asset": a.asset,
        "widening_bps": a.widening_bps,
        "skew_bps": a.skew_bps,
        "vol_multiplier": a.vol_multiplier,
        "started_at": a.started_at.isoformat(),
        "horizon_s": a.horizon.total_seconds(),
        "decay": a.decay,
        "half_life_s": a.half_life.total_seconds() if a.half_life is not None else None,
        **meta,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def adjustment_from_json(raw: bytes) -> SignalAdjustment:
    doc = json.loads(raw)
    half_life = doc.get("half_life_s")
    return SignalAdjustment(
        signal_id=doc["signal_id"],
        asset=doc["asset"],
        widening_bps=float(doc["widening_bps"]),
        skew_bps=float(doc["skew_bps"]),
        vol_multiplier=float(doc["vol_multiplier"]),
        started_at=datetime.fromisoformat(doc["started_at"]),
        horizon=timedelta(seconds=doc["horizon_s"]),
        decay=doc["decay"],
        half_life=timedelta(seconds=half_life) if half_life is not None else None,
    )


def override_json(o: QuoteOverride, **meta: str) -> bytes:
    doc = {
        "asset": o.asset,
        "until": o.until.isoformat(),
        "spread_multiplier": o.spread_multiplier,
        "bid_widening_bps": o.bid_widening_bps,
        "ask_widening_bps": o.ask_widening_bps,
        "skew_bps": o.skew_bps,
        "reason": o.reason,
        **meta,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def override_from_json(raw: bytes) -> QuoteOverride:
    doc = json.loads(raw)
    return QuoteOverride(
        asset=doc["asset"],
        until=datetime.fromisoformat(doc["until"]),
        spread_multiplier=float(doc["spread_multiplier"]),
        bid_widening_bps=float(doc["bid_widening_bps"]),
        ask_widening_bps=float(doc["ask_widening_bps"]),
        skew_bps=float(doc["skew_bps"]),
        reason=doc.get("reason", ""),
    )


# Protobuf


def timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def params_proto(a: QuoteAdjustment) -> quoting_pb2.QuoteParams:
    msg = quoting_pb2.QuoteParams(
        asset=a.asset,
        spread_multiplier=a.spread_multiplier,
        bid_widening_bps=a.bid_widening_bps,
        ask_widening_bps=a.ask_widening_bps,
        skew_bps=a.skew_bps,
        signal_ids=a.signal_ids,
        override_active=a.override_active,
        kill_switch=a.kill_switch,
    )
    if a.valid_until is not None:
        msg.valid_until.FromDatetime(a.valid_until)
    if a.as_of is not None:
        msg.as_of.FromDatetime(a.as_of)
    return msg


def params_from_proto(msg: quoting_pb2.QuoteParams) -> QuoteAdjustment:
    """What the engine applies; raises ValueError on numbers the model refuses (NaN, multiplier < 1)."""
    return QuoteAdjustment(
        asset=msg.asset,
        spread_multiplier=msg.spread_multiplier or 1.0,
        bid_widening_bps=msg.bid_widening_bps,
        ask_widening_bps=msg.ask_widening_bps,
        skew_bps=msg.skew_bps,
        valid_until=msg.valid_until.ToDatetime(tzinfo=UTC) if msg.HasField("valid_until") else None,
        signal_ids=tuple(msg.signal_ids),
        override_active=msg.override_active,
        kill_switch=msg.kill_switch,
        as_of=msg.as_of.ToDatetime(tzinfo=UTC) if msg.HasField("as_of") else None,
    )
