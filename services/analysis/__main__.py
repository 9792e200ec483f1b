"""`tapewatch analysis`: run the analysis service (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import asyncio
import sys

from services.analysis.service import serve
from services.analysis.settings import AnalysisSettings


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("tapewatch analysis takes no arguments; configure with TAPEWATCH_* variables", file=sys.stderr)
        return 2
    asyncio.run(serve(AnalysisSettings.load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
