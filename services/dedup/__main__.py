"""`tapewatch dedup`: run the dedup service (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import sys

from services.cli import run_service
from services.dedup.service import serve
from services.dedup.settings import DedupSettings


def main(argv: list[str] | None = None) -> int:
    return run_service("dedup", serve, DedupSettings.load, list(argv or []))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
