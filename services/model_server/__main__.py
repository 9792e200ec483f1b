"""`tapewatch model-server`: the CPU model server (Triton via PyTriton) serving `embedder` and `llm`.

Models and the rest come from TAPEWATCH_* settings (TAPEWATCH_EMBEDDER_MODEL, TAPEWATCH_LLM_MODEL, ...);
the flags below override the ports, 0 picking a free one (written to --ready-file once serving).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from services.model_server.server import resolve_ports, serve
from services.model_server.settings import ModelServerSettings
from services.runtime.logs import setup_logging
from services.runtime.telemetry import setup_telemetry


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tapewatch model-server", description=__doc__)
    parser.add_argument("--grpc-port", type=int, help="default: the port of TAPEWATCH_MODEL_SERVER_ADDR")
    parser.add_argument("--http-port", type=int, help="default: TAPEWATCH_MODEL_SERVER_HTTP_PORT (8000)")
    parser.add_argument(
        "--metrics-port", type=int, help="default: TAPEWATCH_MODEL_SERVER_METRICS_PORT (8002)"
    )
    parser.add_argument("--ready-file", type=Path, help="write {grpc_port, http_port} here once serving")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    settings = ModelServerSettings.load()
    setup_logging("model-server", settings.log_level, settings.log_format)
    setup_telemetry("model-server", settings.otel_exporter, settings.otel_endpoint)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve(
        settings,
        resolve_ports(settings, args.grpc_port, args.http_port, args.metrics_port),
        args.ready_file,
        stop,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
