"""`tapewatch ingest`: run the ingest service (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import sys

from services.cli import run_service
from services.ingest.service import serve
from services.ingest.settings import IngestSettings


def main(argv: list[str] | None = None) -> int:
    return run_service("ingest", serve, IngestSettings.load, list(argv or []))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
