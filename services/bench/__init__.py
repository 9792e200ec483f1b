"""Benchmarks: each module has `add_arguments(parser)` and `run(args) -> dict`; the CLI prints the dict as
JSON. Speed is reported with the machine and, where there is one, a reference measured in the same run."""
