"""`tapewatch quoting`: run the quoting adapter (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import sys

from services.cli import run_service
from services.quoting_adapter.service import serve
from services.quoting_adapter.settings import QuotingSettings


def main(argv: list[str] | None = None) -> int:
    return run_service("quoting", serve, QuotingSettings.load, list(argv or []))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
