"""Fill the GPU model repository (model_repo/) into a build folder.

model_repo/ holds Triton configs with deploy-time values written as ``${name}``. ``fill`` copies the
repository into a build folder (never in place), substitutes every placeholder in the ``config.pbtxt``
files and fails with one message listing every placeholder left unfilled and every value nobody asked
for. Other files (model.py, .gitkeep) are copied as they are.

    python -m services.model_server.repo_fill --out build/model_repo \\
        --values-file deploy/gpu/model_repo.env engine_dir=/models/engine tokenizer_dir=/models/hf

Standard library only, so the Triton image can run it as a plain script too.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONFIG_NAME = "config.pbtxt"
MARKER = ".repo_fill"  # written into every folder fill() creates; only such a folder is ever replaced
DEFAULT_REPO = Path(__file__).resolve().parents[2] / "model_repo"


class FillError(ValueError):
    """The values do not match the placeholders, or the output folder is not safe to write."""


def placeholders(repo_dir: Path) -> dict[str, list[Path]]:
    """Placeholder name -> the config files (relative to repo_dir) that use it."""
    found: dict[str, list[Path]] = {}
    for config in sorted(Path(repo_dir).rglob(CONFIG_NAME)):
        for name in PLACEHOLDER.findall(config.read_text(encoding="utf-8")):
            files = found.setdefault(name, [])
            rel = config.relative_to(repo_dir)
            if rel not in files:
                files.append(rel)
    return found


def _as_text(value: object) -> str:
    # pbtxt parameters spell booleans in lower case ("true"), as the TensorRT-LLM backend reads them.
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check_values(repo_dir: Path, values: Mapping[str, object]) -> dict[str, str]:
    wanted = placeholders(repo_dir)
    text = {key: _as_text(value) for key, value in values.items()}
    problems: list[str] = []
    missing = sorted(set(wanted) - set(text))
    if missing:
        problems.append(
            "unfilled placeholders: "
            + ", ".join(f"{name} (in {', '.join(map(str, wanted[name]))})" for name in missing)
        )
    unknown = sorted(set(text) - set(wanted))
    if unknown:
        problems.append("unknown keys (no config uses them): " + ", ".join(unknown))
    bad_keys = sorted(key for key in text if not KEY.match(key))
    if bad_keys:
        problems.append("keys that are not identifiers: " + ", ".join(map(repr, bad_keys)))
    # A value is pasted into pbtxt, often inside quotes: quotes, backslashes and control characters
    # would change the config's structure instead of filling a value.
    unsafe = sorted(key for key, value in text.items() if re.search(r'["\\\x00-\x1f]', value))
    if unsafe:
        problems.append("values with quotes, backslashes or control characters: " + ", ".join(unsafe))
    if problems:
        raise FillError(f"cannot fill {repo_dir}: " + "; ".join(problems))
    return text


def _prepare_out(repo_dir: Path, out_dir: Path) -> None:
    repo, out = repo_dir.resolve(), out_dir.resolve()
    if out == repo or repo in out.parents or out in repo.parents:
        raise FillError(f"output {out_dir} overlaps the repository {repo_dir}; fill never writes in place")
    if out.exists():
        if not out.is_dir():
            raise FillError(f"output {out_dir} exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise FillError(
                f"output {out_dir} is not empty and was not made by repo_fill; refusing to replace it"
            )
        shutil.rmtree(out)


def fill(repo_dir: Path | str, out_dir: Path | str, values: Mapping[str, object]) -> Path:
    """Copy repo_dir to out_dir with every ``${placeholder}`` in its configs filled; return out_dir.

    Raises FillError, before anything is written, if a placeholder has no value, a value has no
    placeholder, a value could break the config, or out_dir is or holds the repository, or is a
    non-empty folder that fill did not make.
    """
    repo_dir, out_dir = Path(repo_dir), Path(out_dir)
    if not repo_dir.is_dir():
        raise FillError(f"model repository {repo_dir} is not a folder")
    text = _check_values(repo_dir, values)
    _prepare_out(repo_dir, out_dir)
    shutil.copytree(repo_dir, out_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for config in out_dir.rglob(CONFIG_NAME):
        source = config.read_text(encoding="utf-8")
        config.write_text(PLACEHOLDER.sub(lambda m: text[m.group(1)], source), encoding="utf-8")
    (out_dir / MARKER).write_text(f"filled from {repo_dir.resolve()}\n", encoding="utf-8")
    return out_dir


def read_values_file(path: Path | str) -> dict[str, str]:
    """Read ``key=value`` lines (.env style): blank lines and ``#`` comments skipped, ``export`` and
    matching surrounding quotes allowed."""
    values: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not KEY.match(key):
            raise FillError(f"{path}:{number}: expected key=value, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not KEY.match(key):
            raise FillError(f"expected key=value, got {item!r}")
        values[key] = value
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="repo_fill", description="Fill model_repo/ placeholders into a build folder."
    )
    parser.add_argument(
        "--repo", type=Path, default=DEFAULT_REPO, help="model repository (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, required=True, help="build folder to create or replace")
    parser.add_argument(
        "--values-file",
        type=Path,
        action="append",
        default=[],
        help=".env-style key=value file; repeatable, later files and key=value arguments win",
    )
    parser.add_argument("--list", action="store_true", help="print the placeholders and the files using them")
    parser.add_argument("values", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)

    try:
        if args.list:
            for name, files in sorted(placeholders(args.repo).items()):
                print(f"{name}\t{', '.join(map(str, files))}")
            return 0
        values: dict[str, str] = {}
        for path in args.values_file:
            values.update(read_values_file(path))
        values.update(parse_assignments(args.values))
        out = fill(args.repo, args.out, values)
    except (FillError, OSError) as exc:
        print(f"repo_fill: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
