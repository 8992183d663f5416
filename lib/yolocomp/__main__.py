"""``python -m yolocomp train|val|detect|prune ...`` (also the ``yolocomp`` console script)."""

from __future__ import annotations

import sys

USAGE = "usage: python -m yolocomp {train,val,detect,prune} [options]   (python -m yolocomp CMD --help for options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        from .engine.train_cli import cli_train

        cli_train(rest)
    elif cmd == "val":
        from .eval import cli_val

        cli_val(rest)
    elif cmd == "detect":
        from .detect import cli_detect

        cli_detect(rest)
    elif cmd == "prune":
        from .prune.cli import cli_prune

        return cli_prune(rest)
    else:
        print(f"unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
