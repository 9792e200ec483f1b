"""`tapewatch` command line. Each command lives in its own module and is imported only when used."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

# command -> (module:function, one-line help). The function takes the remaining argv.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("services.pipeline.run:main", "run the embedded default: Redis Stack, services, news replay"),
    "ingest": ("services.ingest.__main__:main", "run the ingest service"),
    "dedup": ("services.dedup.__main__:main", "run the dedup service (news.raw -> stories -> news.unique)"),
    "source": ("services.ingest.pump:main", "run a source adapter (csv, rss, webhook) into ingest"),
    "model-server": ("services.model_server.__main__:main", "run the CPU model server (Triton via PyTriton)"),
    "redis": ("services.runtime.redis_server:main", "run the embedded Redis Stack server in the foreground"),
    "traces": ("services.runtime.traces:main", "run a local OTLP receiver and print each trace's stages"),
    "analysis": ("services.analysis.__main__:main", "run the analysis service (stories -> pending signals)"),
    "quoting": ("services.quoting_adapter.__main__:main", "run the quoting adapter service"),
    "engine": ("services.quoting_adapter.engine_client:main", "run the reference market-making engine"),
    "approval": ("services.approval.__main__:main", "run the approval gate + trader console; add-trader ..."),
    "feedback": ("services.approval.feedback:main", "decisions as labelled JSONL: feedback export --out F"),
    "eval": ("services.evals.__main__:main", "evaluations, printed as JSON: eval dedup|dedup-replay"),
    "bench": ("services.bench.__main__:main", "benchmarks, printed as JSON: bench ingest|llm|embed|..."),
    "finetune": ("services.finetune.__main__:main", "fine-tune the embedder on crypto duplicates"),
    "backtest": ("services.backtest.__main__:main", "quoting with and without signals on real news and bars"),
}


def run_json_command(group: str, registry: dict[str, str], argv: list[str]) -> int:
    """`tapewatch bench|eval NAME ...`: the module's `add_arguments(parser)` and `run(args) -> dict`,
    printed as one JSON object."""
    import argparse
    import json

    if not argv or argv[0] not in registry:
        print(f"usage: tapewatch {group} {{{','.join(registry)}}} [--json] [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(registry[argv[0]])
    parser = argparse.ArgumentParser(prog=f"tapewatch {group} {argv[0]}", description=module.__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output too)")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    print(json.dumps(module.run(args), indent=None if args.json else 2))
    return 0


def run_service(
    name: str, serve: Callable[[Any], Coroutine[Any, Any, None]], settings: Callable[[], Any], argv: list[str]
) -> int:
    """`tapewatch <service>`: no arguments; everything comes from TAPEWATCH_* / TAPEWATCH_CONFIG."""
    if argv:
        print(f"tapewatch {name} takes no arguments; configure with TAPEWATCH_* variables", file=sys.stderr)
        return 2
    asyncio.run(serve(settings()))
    return 0


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tapewatch COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tapewatch: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
