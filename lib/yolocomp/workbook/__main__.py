"""``python -m yolocomp.workbook run|list``: execute the notebooks that regenerate ``results/``."""

from __future__ import annotations

import argparse
import sys

from yolocomp.errors import ParameterError
from yolocomp.workbook.notebooks import discover, select
from yolocomp.workbook.params import PROFILES
from yolocomp.workbook.runner import parse_value, plan, run_all, shell_command, summary, up_to_date


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m yolocomp.workbook", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute notebooks with papermill, band after band")
    run.add_argument(
        "--profile", default="small", choices=PROFILES, help="parameter profile (default: small)"
    )
    run.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="fnmatch glob over notebook ids or their band folder (repeatable; default: all)",
    )
    run.add_argument("--jobs", type=int, default=1, help="notebooks of one band run at once (default: 1)")
    run.add_argument(
        "--gpus", default="", help="comma-separated GPU ids; each job gets one via CUDA_VISIBLE_DEVICES"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="skip notebooks whose notebook, library sources, parameters and CSVs are unchanged",
    )
    run.add_argument(
        "--print-commands",
        action="store_true",
        help="print one shell command per notebook (for a Slurm array) and run nothing",
    )
    run.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout in seconds")
    run.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter in every selected notebook (value parsed as a Python literal)",
    )
    lst = sub.add_parser("list", help="print notebook ids in run order")
    lst.add_argument("--only", action="append", metavar="GLOB", help="as for run")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 when a notebook failed, 2 for bad parameters)."""
    args = _parser().parse_args(argv)
    patterns = args.only or ["*"]
    if args.cmd == "list":
        print("\n".join(select(discover(), patterns)))
        return 0
    overrides = {name: parse_value(value) for name, value in args.p}
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    try:
        jobs = plan(args.profile, patterns, overrides)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_commands:
        todo = [j for j in jobs if not (args.resume and up_to_date(j) is not None)]
        for i, job in enumerate(todo):
            print(shell_command(job, args.timeout, gpus[i % len(gpus)] if gpus else None))
        return 0
    outcomes = run_all(jobs, args.jobs, gpus, args.resume, args.timeout)
    print(summary(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
