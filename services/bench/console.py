"""Console latency: from a pending signal written to signals.pending to it being visible in an open console.

Starts a Redis Stack and the approval process (`tapewatch approval`, gRPC + console) as separate
processes, logs a trader in, opens the console, then writes --signals signals at --rate per second. Each
one is timed from just before its XADD to (sse) its `signal` event arriving on the console's event stream,
or (browser) its card being rendered in headless Chromium (a `signal-visible:<id>` performance mark); the
trader then rejects it, so the desk stays at a realistic size. The reference is a bare Redis hop in the
same run: XADD to a stream that a blocked XREAD client is waiting on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from services.approval.auth import hash_password
from services.approval.samples import sample_signal
from services.bench.machine import machine, percentile
from services.pipeline.supervisor import ServiceProcess
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import publish

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client", choices=["sse", "browser"], default="sse", help="who watches the console")
    parser.add_argument("--signals", type=int, default=200, help="pending signals written")
    parser.add_argument("--rate", type=float, default=10.0, help="signals per second")


async def _login(http: aiohttp.ClientSession, base: str, name: str, password: str) -> None:
    async with http.get(base + "/login") as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert csrf, "no CSRF field on the login page"
    async with http.post(
        base + "/login",
        data={"name": name, "password": password, "csrf": csrf.group(1)},
        allow_redirects=False,
    ) as r:
        if r.status != 303:
            raise RuntimeError(f"login failed: HTTP {r.status}")


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The console's server-sent events as (event, data)."""
    event = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


async def _paced(redis: aioredis.Redis, n: int, rate: float, tag: str) -> AsyncIterator[tuple[str, float]]:
    """Write the signals at the rate; yields (id, ms since epoch just before its XADD)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        signal_id = f"{tag}-{i}"
        data = sample_signal(signal_id, i).SerializeToString()
        sent_ms = time.time() * 1000
        await publish(redis, "signals.pending", data, signal_id)
        yield signal_id, sent_ms


async def _sse(base: str, redis: aioredis.Redis, args: argparse.Namespace, name: str, pw: str) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, base, name, pw)
        async with http.get(base + "/api/events", timeout=aiohttp.ClientTimeout(total=None)) as response:
            events = sse_events(response)
            _, snapshot = await anext(events)
            headers = {"X-CSRF-Token": snapshot["me"]["csrf"]}
            seen: dict[str, float] = {}
            arrived = asyncio.Event()

            async def listen() -> None:
                async for kind, doc in events:
                    if kind == "signal" and doc["kind"] == "new":
                        seen[doc["signal"]["id"]] = time.time() * 1000
                        arrived.set()

            listener = asyncio.create_task(listen())
            try:
                async for signal_id, sent_ms in _paced(redis, args.signals, args.rate, "sse"):
                    while signal_id not in seen:
                        arrived.clear()
                        await asyncio.wait_for(arrived.wait(), 10)
                    latencies.append(seen[signal_id] - sent_ms)
                    body = {"signal_id": signal_id, "action": "REJECT", "reason": "bench"}
                    async with http.post(base + "/api/decide", json=body, headers=headers) as r:
                        r.raise_for_status()
            finally:
                listener.cancel()
    return latencies


async def _browser(
    base: str, redis: aioredis.Redis, args: argparse.Namespace, name: str, pw: str
) -> list[float]:
    from playwright.async_api import async_playwright

    latencies: list[float] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        # the console's CSP forbids eval; the bench's own probes need it (the page's scripts are unchanged)
        context = await browser.new_context(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
        page = await context.new_page()
        await page.goto(base + "/login")
        await page.fill("#name", name)
        await page.fill("#password", pw)
        await page.click("#login-submit")
        await page.wait_for_selector("#feed-status.ok")
        async for signal_id, sent_ms in _paced(redis, args.signals, args.rate, "browser"):
            mark = f"signal-visible:{signal_id}"
            await page.wait_for_function(f"performance.getEntriesByName({json.dumps(mark)}).length > 0")
            shown_ms = await page.evaluate(
                f"performance.timeOrigin + performance.getEntriesByName({json.dumps(mark)})[0].startTime"
            )
            latencies.append(float(shown_ms) - sent_ms)
            await page.keyboard.press("r")  # the trader rejects it; the desk stays small
            await page.wait_for_selector(f'.signal[data-id="{signal_id}"]', state="detached")
        await browser.close()
    return latencies


async def _bare_redis(url: str, n: int, rate: float) -> list[float]:
    writer = aioredis.Redis.from_url(url)
    reader = aioredis.Redis.from_url(url)
    latencies: list[float] = []
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(min(n, 200)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            last = await writer.xrevrange("bare.pending", count=1)
            after = last[0][0] if last else "0-0"
            waiting = asyncio.create_task(reader.xread({"bare.pending": after}, block=5000))
            await asyncio.sleep(0.002)  # the reader is blocked before the write, as the console's feed is
            sent = time.perf_counter()
            await writer.xadd("bare.pending", {"data": sample_signal(f"bare-{i}", i).SerializeToString()})
            await waiting
            latencies.append((time.perf_counter() - sent) * 1000)
    finally:
        await writer.aclose()
        await reader.aclose()
    return latencies


async def _bench(args: argparse.Namespace) -> dict[str, object]:
    name, password = "bench", "bench-" + secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="tw-bench-console-") as tmp:
        redis_server = RedisStack(Path(tmp) / "redis").start()
        address, console = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        env = {
            "REDIS_URL": redis_server.url,
            "TAPEWATCH_APPROVAL_ADDR": address,
            "TAPEWATCH_CONSOLE_ADDR": console,
            "TAPEWATCH_QUOTING_ADDR": f"127.0.0.1:{free_port()}",
            "TAPEWATCH_ANALYSIS_ADDR": f"127.0.0.1:{free_port()}",
            "TAPEWATCH_EXPIRY_S": "600",
            "TAPEWATCH_TRADERS": json.dumps([{"name": name, "password_hash": hash_password(password)}]),
            "TAPEWATCH_LOG_LEVEL": "WARNING",
        }
        approval = ServiceProcess("approval", address, env, Path(tmp) / "logs").start()
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            await approval.wait_serving()
            watch = _browser if args.client == "browser" else _sse
            latencies = await watch(f"http://{console}", redis, args, name, password)
            bare = await _bare_redis(redis_server.url, args.signals, args.rate)
        finally:
            await redis.aclose()
            approval.stop()
            redis_server.stop()
    p99 = percentile(latencies, 99)
    return {
        "bench": "console",
        "client": args.client,
        "signals": len(latencies),
        "rate_per_s": args.rate,
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max(latencies), 3),
        "reference": {
            "bare_redis_hop_p50_ms": round(percentile(bare, 50), 3),
            "bare_redis_hop_p99_ms": round(percentile(bare, 99), 3),
        },
        "vs_bare_redis_p99": round(p99 / max(percentile(bare, 99), 1e-3), 1),
        "targets": {"p99_ms": "< 200"},
        "machine": machine(),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    return asyncio.run(_bench(args))
