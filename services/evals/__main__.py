"""`tapewatch eval NAME [--json] ...`: run one evaluation and print one JSON object."""

from __future__ import annotations

from services.cli import run_json_command

EVALS = {
    "dedup": "services.evals.dedup",
    "dedup-replay": "services.dedup.replay",
    "impact": "services.evals.impact",
}


def main(argv: list[str]) -> int:
    return run_json_command("eval", EVALS, argv)
