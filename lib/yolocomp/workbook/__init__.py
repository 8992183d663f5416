"""The notebook side of yolocomp: strict parameters, deterministic result tables, an artefact cache, a runner.

Every notebook starts with a ``parameters`` cell and then::

    from yolocomp import workbook
    P = workbook.parameters("03_pruning/01_slimming", globals())

and ends with ``workbook.write_results(df, "03_pruning/slimming")``. Run them all with
``python -m yolocomp.workbook run --profile small``.
"""

from yolocomp.workbook.cache import artefact, lookup
from yolocomp.workbook.params import PROFILES, Params, declared, latency_options, parameters, resolve
from yolocomp.workbook.results import VOCABULARY, list_results, read_results, results_root, write_results

__all__ = [
    "PROFILES",
    "VOCABULARY",
    "Params",
    "artefact",
    "declared",
    "latency_options",
    "list_results",
    "lookup",
    "parameters",
    "read_results",
    "resolve",
    "results_root",
    "write_results",
]
