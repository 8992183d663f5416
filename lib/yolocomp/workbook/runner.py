"""Run notebooks with papermill: one process per notebook, band after band, GPU slots, resumable.

Each notebook runs as ``python -m papermill <in> <runs>/<id>.ipynb -k python3 -y '{PROFILE: ...}'`` in its
own process (papermill is not safe to run concurrently inside one process). Executed notebooks and logs go to
:func:`runs_dir` (git-ignored); the tables go wherever the notebooks' ``write_results`` calls put them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import queue
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from yolocomp.errors import ParameterError
from yolocomp.fileio import atomic_write
from yolocomp.paths import package_dir, repo_root, results_dir
from yolocomp.workbook.notebooks import bands, discover, select
from yolocomp.workbook.params import notebook_path, resolve
from yolocomp.workbook.results import results_root

# Environment variables that move the library's folders; passed on to printed commands so that they
# reproduce the run.
_LOCATION_VARS = (
    "YOLOCOMP_RESULTS",
    "YOLOCOMP_CACHE",
    "YOLOCOMP_DATA_ROOT",
    "YOLOCOMP_NOTEBOOKS",
    "YOLOCOMP_PROFILES",
)


@dataclass
class Job:
    """One notebook to run: its id, the values passed to papermill and the parameters they resolve to."""

    notebook_id: str
    passed: dict[str, object]
    resolved: dict[str, object]


@dataclass
class Outcome:
    """How one notebook went: ``status`` is ``ok``, ``failed`` or ``skipped`` (up to date under --resume)."""

    notebook_id: str
    status: str
    seconds: float = 0.0
    csvs: list[str] = field(default_factory=list)


def runs_dir(profile: str) -> Path:
    """Executed notebooks, logs and ``.done.json`` records of ``profile``:
    ``results_dir()/runs/<profile>``."""
    return results_dir() / "runs" / profile


def parse_value(text: str) -> object:
    """A ``-p NAME VALUE`` value: a Python literal (``1``, ``0.5``, ``True``, ``None``, ``[1, 2]``), else
    the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def plan(profile: str, patterns: list[str], overrides: dict[str, object]) -> list[Job]:
    """Jobs for the selected notebooks, in run order, with parameters resolved up front so that every error
    is reported before any kernel starts (raises one ParameterError listing all of them)."""
    ids = select(discover(), patterns)
    if not ids:
        raise ParameterError(f"no notebook matches {patterns}; see `python -m yolocomp.workbook list`")
    jobs, errors = [], []
    for nid in ids:
        passed = {"PROFILE": profile, **overrides}
        try:
            jobs.append(Job(nid, passed, resolve(nid, profile, passed)))
        except ParameterError as exc:
            errors.append(str(exc))
    if errors:
        raise ParameterError("\n".join(errors))
    return jobs


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def library_sha256() -> str:
    """One hash over every ``lib/yolocomp/**/*.py|yaml|cfg`` file (path and content)."""
    root = package_dir()
    h = hashlib.sha256()
    for p in sorted(q for ext in ("py", "yaml", "cfg") for q in root.rglob(f"*.{ext}")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + _sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def child_env(gpu: str | None) -> dict[str, str]:
    """Variables set for a notebook process on top of the inherited environment."""
    env = {"YOLOCOMP_ROOT": str(repo_root())}
    env.update({k: os.environ[k] for k in _LOCATION_VARS if os.environ.get(k)})
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def command(job: Job, timeout: int | None) -> list[str]:
    """The papermill argv for ``job`` (absolute paths; the kernel runs in the notebook's folder)."""
    src = notebook_path(job.notebook_id)
    out = runs_dir(job.passed["PROFILE"]) / f"{job.notebook_id}.ipynb"
    passed = {k: list(v) if isinstance(v, tuple) else v for k, v in job.passed.items()}
    argv = [
        sys.executable,
        "-m",
        "papermill",
        str(src),
        str(out),
        "-k",
        "python3",
        "--cwd",
        str(src.parent),
        "-y",
        yaml.safe_dump(passed, default_flow_style=True, sort_keys=False).strip(),
        "--log-output",
        "--no-progress-bar",
    ]
    if timeout:
        argv += ["--execution-timeout", str(timeout)]
    return argv


def shell_command(job: Job, timeout: int | None, gpu: str | None) -> str:
    """``command`` as one shell line with its environment, for a Slurm array or submitit."""
    out_dir = (runs_dir(job.passed["PROFILE"]) / job.notebook_id).parent
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in child_env(gpu).items())
    return f"mkdir -p {shlex.quote(str(out_dir))} && env {env} {shlex.join(command(job, timeout))}"


def _record_path(job: Job) -> Path:
    return runs_dir(job.passed["PROFILE"]) / f"{job.notebook_id}.done.json"


def _fingerprint(job: Job) -> dict[str, object]:
    return {
        "notebook_sha256": _sha256_file(notebook_path(job.notebook_id)),
        "library_sha256": library_sha256(),
        "parameters": json.loads(json.dumps(job.resolved, default=str)),
    }


def up_to_date(job: Job) -> list[str] | None:
    """The CSVs of the last successful run of ``job`` if notebook, library and parameters are unchanged and
    every CSV is still there with the bytes it was written with; else None."""
    path = _record_path(job)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if {k: record.get(k) for k in ("notebook_sha256", "library_sha256", "parameters")} != _fingerprint(job):
        return None
    root = results_root(job.passed["PROFILE"])
    for rel, sha in record.get("csvs", {}).items():
        if not (root / rel).is_file() or _sha256_file(root / rel) != sha:
            return None
    return sorted(record.get("csvs", {}))


def written_csvs(notebook_id: str, profile: str, since_ns: int) -> list[str]:
    """CSVs (relative to ``results_root(profile)``) whose ``.meta.json`` names ``notebook_id`` and was written
    at or after ``since_ns`` (``time.time_ns()``)."""
    root = results_root(profile)
    if not root.is_dir():
        return []
    out = []
    for meta in root.rglob("*.meta.json"):
        if meta.stat().st_mtime_ns < since_ns:
            continue
        try:
            nid = json.loads(meta.read_text()).get("notebook_id")
        except (OSError, json.JSONDecodeError):
            continue
        if nid == notebook_id:
            out.append(meta.with_name(meta.name[: -len(".meta.json")] + ".csv").relative_to(root).as_posix())
    return sorted(out)


_KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")


def _kernel_never_started(log: Path) -> bool:
    text = log.read_text(errors="replace")
    return any(m in text for m in _KERNEL_START_FAILURES) and "Executing Cell 1" not in text


def run_one(job: Job, timeout: int | None, gpu: str | None) -> Outcome:
    """Execute one notebook in its own papermill process; log to ``<runs>/<id>.log``."""
    profile = job.passed["PROFILE"]
    out = runs_dir(profile) / f"{job.notebook_id}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = _record_path(job)
    record.unlink(missing_ok=True)
    # mtime granularity of some filesystems is coarse: start the window a little early.
    start_ns, t0 = time.time_ns() - 2_000_000_000, time.monotonic()
    for _attempt in range(2):
        with open(out.with_suffix(".log"), "wb") as log:
            rc = subprocess.run(
                command(job, timeout),
                env={**os.environ, **child_env(gpu)},
                check=False,
                cwd=notebook_path(job.notebook_id).parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            ).returncode
        # Kernels started by parallel jobs can race for the same free port and die before running any cell
        # (nteract/papermill#511); nothing ran, so starting once more is safe.
        if rc == 0 or not _kernel_never_started(out.with_suffix(".log")):
            break
    seconds = time.monotonic() - t0
    csvs = written_csvs(job.notebook_id, profile, start_ns)
    if rc != 0:
        return Outcome(job.notebook_id, "failed", seconds, csvs)
    root = results_root(profile)
    done = {
        **_fingerprint(job),
        "csvs": {c: _sha256_file(root / c) for c in csvs},
        "seconds": round(seconds, 1),
    }
    atomic_write(record, (json.dumps(done, indent=2) + "\n").encode())
    return Outcome(job.notebook_id, "ok", seconds, csvs)


def run_all(
    jobs: list[Job],
    n_jobs: int = 1,
    gpus: list[str] | None = None,
    resume: bool = False,
    timeout: int | None = None,
) -> list[Outcome]:
    """Run ``jobs`` band by band, up to ``n_jobs`` notebooks of a band at once, one GPU slot each (round-robin
    over ``gpus``); a failure does not stop the others. Returns outcomes in ``jobs`` order."""
    slots: queue.Queue[str | None] = queue.Queue()
    for i in range(max(1, n_jobs)):
        slots.put(gpus[i % len(gpus)] if gpus else None)
    outcomes: dict[str, Outcome] = {}
    bar = tqdm(total=len(jobs), unit="nb", file=sys.stderr, dynamic_ncols=True)

    def work(job: Job) -> Outcome:
        gpu = slots.get()
        try:
            return run_one(job, timeout, gpu)
        # The runner itself failed for this notebook (disk, permissions): report it, the others still run.
        except Exception as exc:  # noqa: BLE001
            print(f"{job.notebook_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return Outcome(job.notebook_id, "failed")
        finally:
            slots.put(gpu)

    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        for group in bands([j.notebook_id for j in jobs]):
            todo = []
            for job in (j for j in jobs if j.notebook_id in group):
                csvs = up_to_date(job) if resume else None
                if csvs is not None:
                    outcomes[job.notebook_id] = Outcome(job.notebook_id, "skipped", 0.0, csvs)
                    bar.update(1)
                else:
                    todo.append(job)
            for future in as_completed([pool.submit(work, job) for job in todo]):
                outcome = future.result()
                outcomes[outcome.notebook_id] = outcome
                bar.set_postfix_str(f"{outcome.notebook_id}: {outcome.status}")
                bar.update(1)
    bar.close()
    return [outcomes[j.notebook_id] for j in jobs]


def summary(outcomes: list[Outcome]) -> str:
    """A plain-text table: notebook, status, seconds, CSVs written."""
    rows = [("notebook", "status", "seconds", "csvs")]
    rows += [(o.notebook_id, o.status, f"{o.seconds:.1f}", " ".join(o.csvs) or "-") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}" for r in rows)
