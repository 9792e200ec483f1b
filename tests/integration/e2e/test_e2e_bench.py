"""`tapewatch bench e2e` runs end to end on a few items and approvals and prints its figures (no timing is
asserted: the benchmark reports, the targets are judged by a person)."""

from __future__ import annotations

import json

import pytest

from services.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_e2e_measures_both_legs(model_server, capsys) -> None:
    server = model_server.grpc_url
    assert main(["bench", "e2e", "--json", "--items", "3", "--approvals", "5", "--model-server", server]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bench"] == "e2e" and result["items"] == 3
    stories = result["ingest_to_analysed"]["samples"]
    assert stories == sum(n for k, n in result["outcomes"].items() if k != "echo_or_rejected") >= 1
    assert result["ingest_to_pending"]["samples"] == result["outcomes"].get("signal", 0)
    assert result["stages_ms"]["dedup"]["samples"] == 3
    assert result["approval_to_quote"]["samples"] == 5 and result["approval_to_quote"]["not_seen"] == 0
    assert result["pending_hop"]["samples"] == 5 and result["decide_rpc"]["samples"] == 5
    assert result["ingest_to_pending_p50_for_target_ms"] > 0 and result["ingest_to_analysed"]["p50_ms"] > 0
    assert set(result["met"]) == {"ingest_to_pending_p50", "approval_to_quote_p99"}
    assert result["machine"]["cores"] >= 1
