"""`tapewatch bench quote` end to end on a small scale: every figure is there (speed is not asserted)."""

from __future__ import annotations

import argparse

import pytest

from services.bench import quote

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_quote_reports_every_figure() -> None:
    parser = argparse.ArgumentParser()
    quote.add_arguments(parser)
    args = parser.parse_args(["--calls", "50", "--subscribers", "5", "--changes", "3", "--signals", "2"])
    result = quote.run(args)
    assert result["get_quote_params"]["samples"] == 50  # type: ignore[index]
    assert result["reference"]["bare_grpc_unary"]["samples"] == 50  # type: ignore[index]
    assert result["watch_fanout"]["samples"] + result["watch_fanout"]["not_seen"] == 15  # type: ignore[index]
    assert result["watch_fanout"]["samples"] > 0  # type: ignore[index]
    assert result["watch_fanout_signals"]["samples"] > 0  # type: ignore[index]
    assert {"p50", "p99"} <= set(result["vs_bare_grpc"])  # type: ignore[arg-type]
    assert result["machine"]["cores"]  # type: ignore[index]
