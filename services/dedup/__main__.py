"""`tapewatch dedup`: run the dedup service (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import asyncio
import sys

from services.dedup.service import serve
from services.dedup.settings import DedupSettings


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("tapewatch dedup takes no arguments; configure with TAPEWATCH_* variables", file=sys.stderr)
        return 2
    asyncio.run(serve(DedupSettings.load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
