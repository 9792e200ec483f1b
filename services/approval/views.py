"""Signals as plain JSON-ready dicts: what the console shows, the audit log's before/after, feedback rows."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2


def _enum(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


def ms(ts: Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def state_name(state: int) -> str:
    return _enum(approval_pb2.SignalState, state, "SIGNAL_STATE_")


def action_name(action: int) -> str:
    return _enum(approval_pb2.Action, action, "ACTION_")


def direction_name(direction: int) -> str:
    return _enum(analysis_pb2.Direction, direction, "DIRECTION_")


def adjustment_view(a: approval_pb2.AssetAdjustment) -> dict[str, Any]:
    return {
        "asset": a.asset,
        "widening_bps": round(a.widening_bps, 4),
        "skew_bps": round(a.skew_bps, 4),
        "vol_multiplier": round(a.vol_multiplier, 4),
        "horizon_minutes": a.horizon_minutes,
        "direction": direction_name(a.direction),
        "quoting_probability": round(a.quoting_probability, 4),
    }


def story_view(story: news_pb2.Story) -> dict[str, Any]:
    item = story.first_item
    return {
        "id": story.id,
        "text": item.text,
        "author": item.author,
        "source": item.source,
        "url": item.url,
        "platform": _enum(news_pb2.Platform, item.platform, "PLATFORM_"),
        "published_at_ms": ms(item.published_at),
        "echo_count": story.echo_count,
        "sources": list(story.sources),
        "echo_rate_per_min": round(story.echo_rate_per_min, 3),
    }


def impact_view(impact: analysis_pb2.MarketImpact) -> dict[str, Any]:
    return {
        "materiality": _enum(analysis_pb2.Materiality, impact.materiality, "MATERIALITY_"),
        "event_type": _enum(analysis_pb2.EventType, impact.event_type, "EVENT_TYPE_"),
        "urgency": _enum(analysis_pb2.Urgency, impact.urgency, "URGENCY_"),
        "horizon_minutes": impact.horizon_minutes,
        "confidence": round(impact.confidence, 4),
        "rationale": impact.rationale,
        "judged_by": _enum(analysis_pb2.JudgedBy, impact.judged_by, "JUDGED_BY_"),
        "prompt_version": impact.prompt_version,
        "model": impact.model,
        "assets": [
            {
                "asset": a.asset,
                "direction": direction_name(a.direction),
                "vol_burst_probability": round(a.vol_burst_probability, 4),
                "quoting_probability": round(a.quoting_probability, 4),
            }
            for a in impact.assets
        ],
    }


def decision_view(d: approval_pb2.Decision) -> dict[str, Any]:
    return {
        "action": action_name(d.action),
        "trader": d.trader,
        "reason": d.reason,
        "decided_at_ms": ms(d.decided_at),
        "modified": [adjustment_view(a) for a in d.modified],
    }


def signal_view(s: approval_pb2.Signal) -> dict[str, Any]:
    return {
        "id": s.id,
        "story_id": s.story_id,
        "state": state_name(s.state),
        "story": story_view(s.story),
        "impact": impact_view(s.impact),
        "adjustments": [adjustment_view(a) for a in s.adjustments],
        "created_at_ms": ms(s.created_at),
        "expires_at_ms": ms(s.expires_at),
        "trace_id": s.trace_id,
        "decision": decision_view(s.decision) if s.HasField("decision") else None,
    }


def audit_summary(s: approval_pb2.Signal) -> dict[str, Any]:
    """The part of a signal the audit log keeps as before / after."""
    doc: dict[str, Any] = {
        "state": state_name(s.state),
        "adjustments": [adjustment_view(a) for a in s.adjustments],
    }
    if s.HasField("decision"):
        doc["decision"] = decision_view(s.decision)
    return doc
