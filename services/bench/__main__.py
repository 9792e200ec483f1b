"""`tapewatch bench NAME [--json] ...`: run one benchmark and print one JSON object."""

from __future__ import annotations

from services.cli import run_json_command

BENCHES = {
    "ingest": "services.bench.ingest",
    "console": "services.bench.console",
    "llm": "services.bench.llm",
    "embed": "services.bench.embed",
    "dedup": "services.bench.dedup",
    "quote": "services.bench.quote",
    "analysis": "services.bench.analysis",
    "e2e": "services.bench.e2e",
}


def main(argv: list[str]) -> int:
    return run_json_command("bench", BENCHES, argv)
