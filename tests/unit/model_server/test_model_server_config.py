"""Model server configuration: ports from settings or flags (0: a free port), tensors from the contract."""

from __future__ import annotations

import numpy as np
import pytest

from services.model_server.contract import LLM
from services.model_server.server import resolve_ports, tensors
from services.model_server.settings import ModelServerSettings


def test_ports_come_from_settings_unless_a_flag_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAPEWATCH_CONFIG", raising=False)
    monkeypatch.setenv("TAPEWATCH_MODEL_SERVER_ADDR", "127.0.0.1:9101")
    monkeypatch.setenv("TAPEWATCH_MODEL_SERVER_HTTP_PORT", "9100")
    settings = ModelServerSettings.load()
    ports = resolve_ports(settings, grpc=None, http=None, metrics=0)
    assert (ports.grpc, ports.http) == (9101, 9100)
    assert ports.metrics > 0
    assert resolve_ports(settings, grpc=9201, http=None, metrics=None).grpc == 9201


def test_triton_tensors_follow_the_contract() -> None:
    inputs, outputs = tensors(LLM)
    assert [(t.name, t.dtype, t.shape, t.optional) for t in inputs] == [
        ("text_input", np.bytes_, (1,), False),
        ("max_tokens", np.int32, (1,), False),
        ("temperature", np.float32, (1,), True),
        ("guided_decoding_guide_type", np.bytes_, (1,), True),
        ("guided_decoding_guide", np.bytes_, (1,), True),
    ]
    assert [(t.name, t.dtype) for t in outputs] == [("text_output", np.bytes_), ("sequence_length", np.int32)]
