"""`tapewatch finetune ...`: train the embedder on crypto duplicates (see services/finetune/__init__.py).

tapewatch finetune pairs --out DIR [...]               build a pair set (train / held-out)
tapewatch finetune --pairs DIR --out DIR [--epochs N]  fine-tune, then write the before/after report
tapewatch finetune report --model DIR --pairs DIR      write the report again for a model folder
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pairs"]:
        from services.finetune import pairs

        return pairs.main(argv[1:])
    if argv[:1] == ["report"]:
        from services.finetune import report

        return report.main(argv[1:])
    if argv[:1] == ["serve"]:
        from services.finetune import report

        return report.serve_main(argv[1:])
    from services.finetune import train

    return train.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
