"""`tapewatch eval NAME [--json] ...`: run one evaluation and print one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

EVALS = {
    "dedup": "services.evals.dedup",
    "dedup-replay": "services.dedup.replay",
    "impact": "services.evals.impact",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EVALS:
        print(f"usage: tapewatch eval {{{','.join(EVALS)}}} [--json] [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(EVALS[argv[0]])
    parser = argparse.ArgumentParser(prog=f"tapewatch eval {argv[0]}", description=module.__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output too)")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    result = module.run(args)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
