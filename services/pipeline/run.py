"""`tapewatch run` (what `make run` starts): Redis Stack, the model server, every service (ingest, dedup,
analysis, approval with the trader console, quoting adapter), the reference market-making engine, and a
time-compressed replay of real news, with a live view of the pipeline. Ctrl-C stops everything.

With `--auto-approve notable|high` a scripted trader approves signals of at least that materiality, so the
quote changes can be watched without a person; off by default: a human decides in the console.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import sys
import time
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.approval.auth import hash_password, token_digest
from services.ingest.publisher import PublishTally, publish_source
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource, default_replay_csv
from services.model_server.process import ModelServerProcess
from services.pipeline.monitor import PipelineMonitor
from services.pipeline.supervisor import ServiceProcess
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack
from services.runtime.server import wait_for_shutdown_signal
from services.runtime.settings import ServiceSettings
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2, approval_pb2_grpc
from tapewatch.ingest.v1 import ingest_pb2_grpc

STAGES = ("ingest", "dedup", "analysis", "approval", "quoting")
MATERIALITY = {"notable": analysis_pb2.MATERIALITY_NOTABLE, "high": analysis_pb2.MATERIALITY_HIGH}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tapewatch run", description=__doc__)
    p.add_argument(
        "--news", type=Path, default=None, help="CSV to replay (default: shared crypto news, else sample)"
    )
    p.add_argument("--limit", type=int, default=1000, help="items to replay (0: all)")
    p.add_argument(
        "--duration", type=float, default=60.0, help="replay the selection in about this many seconds"
    )
    p.add_argument("--only-ingest", action="store_true", help="start Redis Stack and ingest only (no models)")
    p.add_argument(
        "--auto-approve", choices=sorted(MATERIALITY), help="scripted trader approves this and above"
    )
    p.add_argument("--exit-after-replay", action="store_true", help="stop everything once the replay is done")
    p.add_argument("--fresh", action="store_true", help="wipe the embedded Redis data first (a new tape)")
    return p.parse_args(argv)


class Desk:
    """Credentials for this run: a console login for the human, a token for the scripted trader."""

    def __init__(self) -> None:
        self.password = secrets.token_urlsafe(12)
        self.auto_token = secrets.token_urlsafe(24)

    def env(self) -> dict[str, str]:
        traders = [{"name": "desk", "password_hash": hash_password(self.password), "role": "trader"}]
        tokens = [{"name": "auto-trader", "token_sha256": token_digest(self.auto_token), "role": "trader"}]
        return {"TAPEWATCH_TRADERS": json.dumps(traders), "TAPEWATCH_API_TOKENS": json.dumps(tokens)}


async def auto_approve(address: str, token: str, at_least: int, console: Console) -> None:
    """The scripted trader: approve every new pending signal of at least this materiality."""
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = approval_pb2_grpc.ApprovalServiceStub(channel)
        async for event in stub.WatchPending(approval_pb2.WatchPendingRequest(), metadata=metadata):
            signal = event.signal
            if (
                event.kind not in (event.KIND_SNAPSHOT, event.KIND_NEW)
                or signal.impact.materiality < at_least
            ):
                continue
            with contextlib.suppress(grpc.aio.AioRpcError):  # someone else decided first, or it expired
                await stub.Decide(
                    approval_pb2.DecideRequest(
                        signal_id=signal.id, action=approval_pb2.ACTION_APPROVE, reason="auto-approve policy"
                    ),
                    metadata=metadata,
                )
                assets = ", ".join(a.asset for a in signal.adjustments)
                console.log(f"auto-approved {signal.id} ({assets}): {signal.story.first_item.text[:70]}")


async def _run(args: argparse.Namespace, console: Console) -> int:
    settings = ServiceSettings.load()
    data_dir = Path(settings.data_dir)
    redis_server = None
    model_server = None
    children: list[ServiceProcess] = []
    background: list[asyncio.Task[None]] = []
    try:
        redis_url = settings.redis_url
        if redis_url is None:
            if args.fresh:
                shutil.rmtree(data_dir / "redis", ignore_errors=True)
            redis_server = RedisStack(data_dir / "redis").start()
            redis_url = redis_server.url
            console.print(f"[green]Redis Stack[/] {redis_url} (data in {data_dir / 'redis'})")
        env = {"REDIS_URL": redis_url, "TAPEWATCH_DATA_DIR": str(data_dir)}
        stages: tuple[str, ...] = ("ingest",) if args.only_ingest else STAGES
        desk = Desk()
        if not args.only_ingest:
            console.print("starting the model server (Triton: embedder + llm) ...")
            model_server = ModelServerProcess(
                data_dir / "model-server", {**env, "TAPEWATCH_LOG_FORMAT": "text"}
            )
            await asyncio.to_thread(model_server.start)
            env["TAPEWATCH_MODEL_SERVER_ADDR"] = model_server.grpc_url
            console.print(f"[green]model server[/] SERVING on {model_server.grpc_url}")
            env.update(desk.env())
        for name in stages:
            address = getattr(settings, f"{name}_addr")
            children.append(ServiceProcess(name, address, env, data_dir / "logs").start())
        await asyncio.gather(*(child.wait_serving(120) for child in children))
        for child in children:
            console.print(f"[green]{child.name}[/] SERVING on {child.address} (log: {child.log_path})")

        if not args.only_ingest:
            children.append(ServiceProcess("engine", "", env, data_dir / "logs", ("--every", "60")).start())
            login = f"login [bold]desk[/] / [bold]{desk.password}[/]"
            console.print(f"[bold]trader console[/] http://{_console_addr()}  {login}")
            if args.auto_approve:
                background.append(
                    asyncio.create_task(
                        auto_approve(
                            settings.approval_addr, desk.auto_token, MATERIALITY[args.auto_approve], console
                        )
                    )
                )

        news = args.news or default_replay_csv()
        selection = await asyncio.to_thread(
            CsvReplaySource(CsvReplayConfig(path=news, limit=args.limit or None)).load
        )
        if not selection:
            console.print(f"[red]no items to replay in {news}[/]")
            return 1
        span_h = max(
            (selection[-1].published_at.ToSeconds() - selection[0].published_at.ToSeconds()) / 3600, 1e-6
        )
        source = CsvReplaySource(
            CsvReplayConfig(path=news, limit=args.limit or None, compress=(span_h, max(args.duration, 0.001)))
        )
        console.print(
            f"replaying {len(selection)} items ({span_h:.1f} h of news) from {news} in ~{args.duration:.0f} s"
        )
        redis = aioredis.Redis.from_url(redis_url)
        monitor = (
            None
            if args.only_ingest
            else PipelineMonitor(redis, settings.dedup_addr, env["TAPEWATCH_MODEL_SERVER_ADDR"])
        )
        try:
            tally = await _replay(source, settings.ingest_addr, len(selection), console, monitor)
            raw_length = await redis.xlen("news.raw")
            console.print(
                f"[bold]summary[/] sent {tally.sent}  accepted {tally.accepted}  "
                f"duplicates {tally.duplicates}  rejected {tally.rejected}  news.raw length {raw_length}"
            )
            for reason, n in sorted(tally.reasons.items(), key=lambda kv: -kv[1])[:5]:
                console.print(f"  rejected {n}: {reason}")
            if not args.exit_after_replay:
                console.print("services keep running; Ctrl-C stops everything")
                stop = asyncio.Event()
                if monitor is None:
                    await wait_for_shutdown_signal(stop)
                else:
                    with Live(await monitor.table(), console=console, refresh_per_second=2) as live:
                        waiter = asyncio.create_task(wait_for_shutdown_signal(stop))
                        while not waiter.done():
                            live.update(await monitor.table())
                            await asyncio.sleep(0.5)
        finally:
            if monitor:
                await monitor.close()
            await redis.aclose()
        return 0
    finally:
        for task in background:
            task.cancel()
        for child in reversed(children):
            child.stop()
        if model_server:
            model_server.stop()
        if redis_server:
            redis_server.stop()
        console.print("stopped: services and Redis Stack")


def _console_addr() -> str:
    from services.approval.settings import ApprovalSettings

    return ApprovalSettings.load().console_addr


async def _replay(
    source: CsvReplaySource, address: str, total: int, console: Console, monitor: PipelineMonitor | None
) -> PublishTally:
    channel = insecure_channel(address, "replay")
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accepted {task.fields[accepted]} dup {task.fields[dup]} rejected {task.fields[rej]}"),
        TimeElapsedColumn(),
    )
    task = progress.add_task("replay", total=total, accepted=0, dup=0, rej=0)

    def update(t: PublishTally) -> None:
        done = t.accepted + t.duplicates + t.rejected
        progress.update(task, completed=done, accepted=t.accepted, dup=t.duplicates, rej=t.rejected)

    with Live(progress, console=console, refresh_per_second=4) as live:
        pump = asyncio.create_task(
            publish_source(source, ingest_pb2_grpc.IngestServiceStub(channel), on_item=update)
        )
        try:
            while not pump.done():
                if monitor is not None:
                    live.update(Group(progress, await monitor.table()))
                await asyncio.wait({pump}, timeout=0.5)
            tally = pump.result()
        finally:
            pump.cancel()
            await channel.close()
    console.print(f"replay done in {time.monotonic() - started:.1f} s")
    return tally


def main(argv: list[str]) -> int:
    args = parse(argv)
    console = Console()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args, console))
    return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
