"""The notebook runner on a fixture tree: 01_alpha/{broken,ok}, 02_beta/after (reads ok's table),
00_overview."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from yolocomp.workbook import runner
from yolocomp.workbook.__main__ import main
from yolocomp.workbook.notebooks import bands, discover, select

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
ALL = ["01_alpha/broken", "01_alpha/ok", "02_beta/after", "00_overview"]


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("notebook ")))
    return {r.split()[0]: r.split()[1:] for r in lines[header + 1 :]}


def _output_of(command: str) -> str:
    words = shlex.split(command)
    return words[words.index("papermill") + 2]


def test_discover_order_and_selection(env):
    ids = discover()
    assert ids == ALL
    assert bands(ids) == [["01_alpha/broken", "01_alpha/ok"], ["02_beta/after"], ["00_overview"]]
    assert select(ids, ["01_alpha"]) == ["01_alpha/broken", "01_alpha/ok"]
    assert select(ids, ["01_alpha/*"]) == ["01_alpha/broken", "01_alpha/ok"]
    assert select(ids, ["*"]) == ALL
    assert select(ids, ["*/ok", "00_*"]) == ["01_alpha/ok", "00_overview"]
    assert select(ids, ["01_alph"]) == []


def test_list_command(env, capsys):
    assert main(["list", "--only", "02_beta"]) == 0
    assert capsys.readouterr().out.split() == ["02_beta/after"]


def test_print_commands(env, capsys):
    assert (
        main(
            [
                "run",
                "--profile",
                "smoke",
                "--print-commands",
                "--gpus",
                "0,1",
                "-p",
                "SEED",
                "2",
                "--only",
                "01_alpha/ok",
                "--only",
                "00_overview",
            ]
        )
        == 2
    )  # SEED is not declared in 00_overview
    assert capsys.readouterr().out == ""
    assert main(["run", "--profile", "smoke", "--print-commands", "--gpus", "0,1", "--timeout", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for i, (line, nid) in enumerate(zip(lines, ALL)):
        words = shlex.split(line)
        assert f"CUDA_VISIBLE_DEVICES={i % 2}" in words and "YOLOCOMP_ROOT=" in line
        at = words.index("papermill")
        assert words[at + 1] == str(FIXTURES / "tree" / f"{nid}.ipynb")
        assert words[at + 2] == str(env / "results" / "runs" / "smoke" / f"{nid}.ipynb")
        assert words[words.index("-y") + 1] == "{PROFILE: smoke}"
        assert (
            words[words.index("-k") + 1] == "python3"
            and words[words.index("--execution-timeout") + 1] == "30"
        )
    assert (
        main(["run", "--profile", "smoke", "--print-commands", "--only", "01_alpha/ok", "-p", "SEED", "2"])
        == 0
    )
    assert "-y '{PROFILE: smoke, SEED: 2}'" in capsys.readouterr().out


def test_bad_parameters_fail_before_any_kernel(env, capsys):
    assert main(["run", "--profile", "smoke", "-p", "IMG_SIZE", "big", "--only", "01_alpha/ok"]) == 2
    assert "parameter IMG_SIZE expects int, got str" in capsys.readouterr().err
    assert not (env / "results").exists()


def test_library_hash_covers_sources_only(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "p.yaml").write_text("{}\n")
    monkeypatch.setattr(runner, "package_dir", lambda: tmp_path)
    first = runner.library_sha256()
    (tmp_path / "notes.txt").write_text("not a source")
    assert runner.library_sha256() == first
    (tmp_path / "sub" / "p.yaml").write_text("{A: 1}\n")
    assert runner.library_sha256() != first


def test_run_summary_exit_code_and_resume(env, capsys, monkeypatch):
    # other work in the same checkout may edit lib/ meanwhile; the library hash is tested on its own above
    monkeypatch.setattr(runner, "library_sha256", lambda: "lib-v1")
    only = ["--only", "01_alpha", "--only", "02_beta"]
    assert main(["run", "--profile", "smoke", "--jobs", "2", "--timeout", "60", *only]) == 1
    rows = _rows(capsys.readouterr().out)
    assert rows["01_alpha/broken"][0] == "failed"
    assert rows["01_alpha/ok"][0] == "ok" and rows["01_alpha/ok"][2:] == ["01_alpha/ok.csv"]
    # 02_beta/after reads ok's table: it can only pass if band 01 finished first
    assert rows["02_beta/after"][0] == "ok" and rows["02_beta/after"][2:] == ["02_beta/after.csv"]
    assert "00_overview" not in rows
    runs = env / "results" / "runs" / "smoke"
    assert "this fixture notebook always fails" in (runs / "01_alpha" / "broken.log").read_text()
    assert not (runs / "01_alpha" / "broken.done.json").exists()
    done = json.loads((runs / "01_alpha" / "ok.done.json").read_text())
    assert done["parameters"]["IMG_SIZE"] == 64 and list(done["csvs"]) == ["01_alpha/ok.csv"]

    # only the failed notebook is left to do ...
    assert main(["run", "--profile", "smoke", "--resume", "--print-commands", *only]) == 0
    assert [_output_of(c) for c in capsys.readouterr().out.splitlines()] == [
        str(runs / "01_alpha" / "broken.ipynb")
    ]
    # ... and a changed table or changed parameters make a notebook stale again
    (env / "results" / "02_beta" / "after.csv").write_text("model\nchanged\n")
    assert main(["run", "--profile", "smoke", "--resume", "--print-commands", *only]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert (
        main(
            [
                "run",
                "--profile",
                "smoke",
                "--resume",
                "--print-commands",
                "--only",
                "01_alpha/ok",
                "-p",
                "SEED",
                "1",
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 1

    monkeypatch.setattr(runner, "library_sha256", lambda: "lib-v2")
    assert main(["run", "--profile", "smoke", "--resume", "--print-commands", "--only", "01_alpha"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # a library change makes everything stale
    monkeypatch.setattr(runner, "library_sha256", lambda: "lib-v1")

    assert main(["run", "--profile", "smoke", "--resume", "--timeout", "60", "--only", "01_alpha"]) == 1
    rows = _rows(capsys.readouterr().out)
    assert rows["01_alpha/ok"] == ["skipped", "0.0", "01_alpha/ok.csv"]
    assert rows["01_alpha/broken"][0] == "failed"


def test_a_kernel_that_never_started_is_told_apart_from_a_failing_cell(tmp_path):
    from yolocomp.workbook.runner import _kernel_never_started

    log = tmp_path / "x.log"
    log.write_text("Input Notebook: a.ipynb\nRuntimeError: Kernel died before replying to kernel_info\n")
    assert _kernel_never_started(log)
    log.write_text("Executing Cell 1---\nEnding Cell 1---\nExecuting Cell 2---\nZeroDivisionError\n")
    assert not _kernel_never_started(log)
