"""`tapewatch quoting`: run the quoting adapter (settings from TAPEWATCH_* / TAPEWATCH_CONFIG)."""

from __future__ import annotations

import asyncio
import sys

from services.quoting_adapter.service import serve
from services.quoting_adapter.settings import QuotingSettings


def main(argv: list[str] | None = None) -> int:
    if argv:
        print("tapewatch quoting takes no arguments; configure with TAPEWATCH_* variables", file=sys.stderr)
        return 2
    asyncio.run(serve(QuotingSettings.load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
