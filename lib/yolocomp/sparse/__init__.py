"""Unstructured (weight-level) pruning: masks, Lottery Ticket / IMP, Continuous Sparsification, sparse storage.

* :mod:`.masks` - bool weight masks as module buffers, the trainer callback that keeps them in force;
* :mod:`.imp` - iterative magnitude pruning, local and global, with rewinding (pruning-spec §12);
* :mod:`.cs` - Continuous Sparsification with soft-mask convs (spec §13);
* :mod:`.storage` - the sparse file format; :mod:`.costs` - non-zero params, MACs and bytes;
* :mod:`.experiment` - cached rounds over the baselines and the notebooks' tables; :mod:`.figures` - plots.

Registered in :data:`yolocomp.registry.PRUNERS` with ``kind="unstructured"``: ``lth-local``, ``lth-global``
(one prune event ``fn(model, rate) -> masks``) and ``cs`` (the whole search, :func:`.cs.continuous_sparsification`).
``method`` metadata is the results-table label.
"""

from ..registry import PRUNERS
from . import cs, imp, masks, storage

_ANDREY = "004_ffd06f0fe2d7895d.txt"
PRUNERS.register("lth-local", imp.lth_local, kind="unstructured", family="lth", scope="local", method="LTH local",
                 seeds=("ANDREY",), spec="pruning-spec §12", seed_file=_ANDREY)
PRUNERS.register("lth-global", imp.lth_global, kind="unstructured", family="lth", scope="global",
                 method="LTH global", seeds=("ANDREY",), spec="pruning-spec §12", seed_file=_ANDREY)
PRUNERS.register("cs", cs.continuous_sparsification, kind="unstructured", family="cs", method=cs.method_label,
                 seeds=("ANDREY",), spec="pruning-spec §13", seed_file=_ANDREY)

__all__ = ["cs", "imp", "masks", "storage"]
