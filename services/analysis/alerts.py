"""Alerts for pending signals: a Slack incoming webhook and the Telegram Bot API (sendMessage).

Best effort with a timeout: the signal is already on `signals.pending` for the console; an alert that
fails is logged and reported, never retried into the stream's way. Secrets never appear in logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

import aiohttp
from pydantic import SecretStr

from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2

log = logging.getLogger("tapewatch.analysis.alerts")
TEXT_CHARS = 280


def alert_text(signal: approval_pb2.Signal) -> str:
    impact = signal.impact
    materiality = analysis_pb2.Materiality.Name(impact.materiality).removeprefix("MATERIALITY_")
    event = analysis_pb2.EventType.Name(impact.event_type).removeprefix("EVENT_TYPE_").lower()
    item = signal.story.first_item
    text = item.text if len(item.text) <= TEXT_CHARS else item.text[:TEXT_CHARS] + "…"
    lines = [f"[{materiality}] {event} · @{item.author or item.source} · pending approval"]
    for a in signal.adjustments:
        direction = analysis_pb2.Direction.Name(a.direction).removeprefix("DIRECTION_").lower()
        lines.append(
            f"{a.asset}: {direction}, p={a.quoting_probability:.2f}, widen {a.widening_bps:g} bps, "
            f"skew {a.skew_bps:+g} bps, vol x{a.vol_multiplier:g}, {a.horizon_minutes} min"
        )
    expires = signal.expires_at.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S UTC")
    judged = "rules fallback" if impact.judged_by == analysis_pb2.JUDGED_BY_RULES_FALLBACK else "LLM"
    lines += [
        f"“{text}”",
        f"{impact.rationale} ({judged})",
        f"signal {signal.id} · story {signal.story_id} · expires {expires}",
    ]
    return "\n".join(lines)


@dataclass
class Alerter:
    session: aiohttp.ClientSession
    slack_webhook_url: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    timeout_s: float = 3.0

    @property
    def channels(self) -> list[str]:
        return [
            n for n, on in (("slack", self.slack_webhook_url), ("telegram", self.telegram_bot_token)) if on
        ]

    async def send(self, signal: approval_pb2.Signal) -> dict[str, str]:
        """Channel -> "ok" or the reason it failed."""
        text = alert_text(signal)
        sends = []
        if self.slack_webhook_url:
            sends.append(self._post("slack", self.slack_webhook_url.get_secret_value(), {"text": text}))
        if self.telegram_bot_token:
            token = self.telegram_bot_token.get_secret_value()
            url = f"{self.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
            body = {"chat_id": self.telegram_chat_id, "text": text, "disable_web_page_preview": True}
            sends.append(self._post("telegram", url, body))
        results = await asyncio.gather(*sends)
        return dict(results)

    async def _post(self, channel: str, url: str, body: Mapping[str, object]) -> tuple[str, str]:
        try:
            async with self.session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            ) as r:
                if r.status // 100 != 2:
                    outcome = f"HTTP {r.status}: {(await r.text())[:200]}"
                elif channel == "telegram" and not (await r.json(content_type=None)).get("ok"):
                    outcome = "telegram answered ok=false"
                else:
                    outcome = "ok"
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            outcome = f"{type(exc).__name__}: {exc}".replace(url, f"<{channel} url>")
        if outcome != "ok":
            log.warning("%s alert failed: %s", channel, outcome)
        return channel, outcome
