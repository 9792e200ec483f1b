"""`tapewatch ingest`: run the ingest service (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import asyncio
import sys

from services.ingest.service import serve
from services.ingest.settings import IngestSettings


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("tapewatch ingest takes no arguments; configure with TAPEWATCH_* variables", file=sys.stderr)
        return 2
    asyncio.run(serve(IngestSettings.load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
