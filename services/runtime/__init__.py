"""Shared runtime of every Tapewatch service: settings, gRPC server, Redis, streams, telemetry, logs."""
