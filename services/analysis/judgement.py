"""The judgement the model returns: enums and probabilities only, checked by pydantic.

Numbers that move quotes are never in it: bps, multipliers and caps are computed by the policy in code.
The asset keys are fixed by code before the call (resolved from the alias table), and the JSON schema the
model server decodes against requires exactly those keys, so the model cannot add or rename an asset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

Materiality = Literal["routine", "notable", "high"]
EventType = Literal[
    "regulation",
    "enforcement",
    "etf",
    "hack_or_exploit",
    "exchange_outage",
    "listing_or_delisting",
    "macro_tariffs",
    "macro_rates",
    "macro_central_banks",
    "macro_geopolitics",
    "influencer_post",
    "protocol_upgrade_or_delay",
    "stablecoin",
    "legal",
    "other",
]
Direction = Literal["bullish", "bearish", "unclear"]
Urgency = Literal["low", "medium", "immediate"]

MATERIALITIES: tuple[str, ...] = get_args(Materiality)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
URGENCIES: tuple[str, ...] = get_args(Urgency)
MIN_HORIZON, MAX_HORIZON, DEFAULT_HORIZON = 5, 240, 30
RATIONALE_CHARS = 160
REQUIRED = ("materiality", "event_type", "assets", "urgency", "horizon_minutes", "confidence", "rationale")


class InvalidReply(ValueError):
    """The model's reply is not a valid judgement; the message says why."""


class AssetView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Direction
    vol_burst_probability: float = Field(ge=0, le=1)


class Judgement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    materiality: Materiality
    event_type: EventType
    assets: dict[str, AssetView]
    urgency: Urgency
    horizon_minutes: int = Field(default=DEFAULT_HORIZON, ge=MIN_HORIZON, le=MAX_HORIZON)
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(max_length=RATIONALE_CHARS)

    @field_validator("assets")
    @classmethod
    def _exactly_the_asked_assets(cls, v: dict[str, AssetView], info: ValidationInfo) -> dict[str, AssetView]:
        asked = (info.context or {}).get("assets")
        if asked is not None and set(v) != set(asked):
            raise ValueError(f"assets {sorted(v)} are not the assets asked for {sorted(asked)}")
        return v

    @field_validator("rationale")
    @classmethod
    def _one_line(cls, v: str) -> str:
        return " ".join(v.split())


def reply_schema(assets: Sequence[str]) -> dict[str, Any]:
    """The JSON schema the model decodes against, with exactly these asset keys. Key order is the order the
    model writes them (the few-shot examples use the same order)."""
    view = {
        "type": "object",
        "properties": {
            "direction": {"type": "string", "enum": list(DIRECTIONS)},
            "vol_burst_probability": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["direction", "vol_burst_probability"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "materiality": {"type": "string", "enum": list(MATERIALITIES)},
            "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
            "assets": {
                "type": "object",
                "properties": {a: view for a in assets},
                "required": list(assets),
                "additionalProperties": False,
            },
            "urgency": {"type": "string", "enum": list(URGENCIES)},
            "horizon_minutes": {"type": "integer", "minimum": MIN_HORIZON, "maximum": MAX_HORIZON},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string", "maxLength": RATIONALE_CHARS},
        },
        "required": list(REQUIRED),
        "additionalProperties": False,
    }


def parse_reply(text: str, assets: Sequence[str]) -> Judgement:
    """The model's reply as a Judgement, or InvalidReply with the first problems."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"not JSON: {exc.msg} at {exc.pos}") from None
    try:
        return Judgement.model_validate(doc, context={"assets": list(assets)})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise InvalidReply(problems) from None
