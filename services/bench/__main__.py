"""`tapewatch bench NAME [--json] ...`: run one benchmark and print one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

BENCHES = {
    "ingest": "services.bench.ingest",
    "console": "services.bench.console",
    "llm": "services.bench.llm",
    "embed": "services.bench.embed",
    "dedup": "services.bench.dedup",
    "quote": "services.bench.quote",
    "analysis": "services.bench.analysis",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print(f"usage: tapewatch bench {{{','.join(BENCHES)}}} [--json] [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHES[argv[0]])
    parser = argparse.ArgumentParser(prog=f"tapewatch bench {argv[0]}", description=module.__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output too)")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    result = module.run(args)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
