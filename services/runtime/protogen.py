"""Compile protos/ into the importable `tapewatch` package under gen/ (code, gRPC stubs and .pyi).

Run by `make protos` and by set-up; the output is never committed. Kept free of project imports so it
runs before the project is installed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"


def generate(protos: Path = PROTOS, out: Path = GEN) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    files = sorted(protos.rglob("*.proto"))
    if not files:
        raise SystemExit(f"protogen: no .proto files under {protos}")
    target = out / "tapewatch"
    if target.exists():
        shutil.rmtree(target)
    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{protos}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *map(str, files),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protogen: protoc failed")
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (target / "py.typed").touch()
    return files


if __name__ == "__main__":
    done = generate()
    print(f"protogen: {len(done)} protos -> {GEN / 'tapewatch'}", file=sys.stderr)
