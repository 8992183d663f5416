"""The documentation tables stay in step with what they describe: datasets, notebooks, results tables and columns."""

from __future__ import annotations

import pandas as pd
from yolocomp.data.catalog import markdown_table
from yolocomp.paths import repo_root
from yolocomp.workbook.notebooks import discover
from yolocomp.workbook.results import list_results

ROOT = repo_root()


def test_readme_starts_with_the_two_commands_and_lists_every_dataset():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make reproduce" in first_block and "make test" in first_block
    assert markdown_table() in text


def test_notebooks_readme_lists_every_notebook():
    text = (ROOT / "notebooks" / "README.md").read_text()
    missing = [nb for nb in discover() if f"`{nb}`" not in text]
    assert not missing, f"notebooks/README.md lacks {missing}"


def test_results_readme_documents_every_committed_table_and_column():
    text = (ROOT / "results" / "README.md").read_text()
    for csv in list_results(ROOT / "results"):
        key = csv.relative_to(ROOT / "results").as_posix()
        assert f"`{key}`" in text, f"results/README.md lacks {key}"
        section = text.split(f"`{key}`", 1)[1].split("\n## ", 1)[0]
        undocumented = [c for c in pd.read_csv(csv, nrows=0).columns if f"`{c}`" not in section and f"`{c}`" not in
                        text.split("## Shared columns", 1)[1].split("\n## ", 1)[0]]
        assert not undocumented, f"{key}: columns {undocumented} not described"
