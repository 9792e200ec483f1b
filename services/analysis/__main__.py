"""`tapewatch analysis`: run the analysis service (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import sys

from services.analysis.service import serve
from services.analysis.settings import AnalysisSettings
from services.cli import run_service


def main(argv: list[str] | None = None) -> int:
    return run_service("analysis", serve, AnalysisSettings.load, list(argv or []))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
