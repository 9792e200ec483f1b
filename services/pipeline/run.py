"""`tapewatch run` (what `make run` starts): Redis Stack, the services, and a time-compressed replay of
real news into `news.raw`, with a progress bar and a summary. Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.ingest.publisher import PublishTally, publish_source
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource, default_replay_csv
from services.pipeline.supervisor import ServiceProcess
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack
from services.runtime.server import wait_for_shutdown_signal
from services.runtime.settings import ServiceSettings
from tapewatch.ingest.v1 import ingest_pb2_grpc

SERVICES = ("ingest",)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tapewatch run", description=__doc__)
    p.add_argument(
        "--news", type=Path, default=None, help="CSV to replay (default: shared crypto news, else sample)"
    )
    p.add_argument("--limit", type=int, default=1000, help="items to replay (0: all)")
    p.add_argument(
        "--duration", type=float, default=60.0, help="replay the selection in about this many seconds"
    )
    p.add_argument("--exit-after-replay", action="store_true", help="stop everything once the replay is done")
    p.add_argument("--fresh", action="store_true", help="wipe the embedded Redis data first (a new tape)")
    return p.parse_args(argv)


async def _run(args: argparse.Namespace, console: Console) -> int:
    settings = ServiceSettings.load()
    data_dir = Path(settings.data_dir)
    redis_server = None
    children: list[ServiceProcess] = []
    try:
        redis_url = settings.redis_url
        if redis_url is None:
            if args.fresh:
                shutil.rmtree(data_dir / "redis", ignore_errors=True)
            redis_server = RedisStack(data_dir / "redis").start()
            redis_url = redis_server.url
            console.print(f"[green]Redis Stack[/] {redis_url} (data in {data_dir / 'redis'})")
        env = {"REDIS_URL": redis_url, "TAPEWATCH_DATA_DIR": str(data_dir)}
        for name in SERVICES:
            children.append(
                ServiceProcess(name, getattr(settings, f"{name}_addr"), env, data_dir / "logs").start()
            )
        for child in children:
            await child.wait_serving()
            console.print(f"[green]{child.name}[/] SERVING on {child.address} (log: {child.log_path})")

        news = args.news or default_replay_csv()
        source = CsvReplaySource(CsvReplayConfig(path=news, limit=args.limit or None))
        items = await asyncio.to_thread(source.load)
        if not items:
            console.print(f"[red]no items to replay in {news}[/]")
            return 1
        span_h = max((items[-1].published_at.ToSeconds() - items[0].published_at.ToSeconds()) / 3600, 1e-6)
        source = CsvReplaySource(
            CsvReplayConfig(path=news, limit=args.limit or None, compress=(span_h, max(args.duration, 0.001)))
        )
        console.print(
            f"replaying {len(items)} items ({span_h:.1f} h of news) from {news} in ~{args.duration:.0f} s"
        )
        tally = await _replay(source, settings.ingest_addr, len(items), console)
        await _summary(tally, redis_url, console)
        if not args.exit_after_replay:
            console.print("services keep running; Ctrl-C stops everything")
            await wait_for_shutdown_signal()
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        if redis_server:
            redis_server.stop()
        console.print("stopped: services and Redis Stack")


async def _replay(source: CsvReplaySource, address: str, total: int, console: Console) -> PublishTally:
    channel = insecure_channel(address, "replay")
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accepted {task.fields[accepted]} dup {task.fields[dup]} rejected {task.fields[rej]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("replay", total=total, accepted=0, dup=0, rej=0)

        def update(t: PublishTally) -> None:
            done = t.accepted + t.duplicates + t.rejected
            progress.update(task, completed=done, accepted=t.accepted, dup=t.duplicates, rej=t.rejected)

        try:
            tally = await publish_source(source, ingest_pb2_grpc.IngestServiceStub(channel), on_item=update)
        finally:
            await channel.close()
    console.print(f"replay done in {time.monotonic() - started:.1f} s")
    return tally


async def _summary(tally: PublishTally, redis_url: str, console: Console) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        raw_len = await client.xlen("news.raw")
    finally:
        await client.aclose()
    console.print(
        f"[bold]summary[/] sent {tally.sent}  accepted {tally.accepted}  duplicates {tally.duplicates}  "
        f"rejected {tally.rejected}  news.raw length {raw_len}"
    )
    for reason, n in sorted(tally.reasons.items(), key=lambda kv: -kv[1])[:5]:
        console.print(f"  rejected {n}: {reason}")


def main(argv: list[str]) -> int:
    args = parse(argv)
    console = Console(stderr=False)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args, console))
    return 130


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
