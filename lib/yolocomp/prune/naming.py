"""File names of pruned models (pruning-spec.md §9.1).

One scheme for every method, ``prune_<method>_<settings>_<name>``, with ``name`` the stem of the source cfg and
the settings the seeds put in their prefixes: TAN's ``keep_{layer_keep}`` for slim and ``{k}_shortcut`` for the
layer methods, SPURS' candidate count for EagleEye.  The seeds' own prefixes differ per repository and script
(``prune_0.8_``, ``normal_prune_0.5_``, ``slim_prune_0.8`` without underscore, ``rand-normal_…``) and put the
prefix after every ``/`` of the cfg path; here the prefix applies to the file name only.
"""

from __future__ import annotations

METHODS = ("normal", "regular", "shortcut", "slim", "layer", "layer-channel", "eagleeye")


def pruned_name(method: str, name: str, percent: float | None = None, layer_keep: float | None = None,
                shortcuts: int | None = None, pool: str | None = None, candidates: int | None = None) -> str:
    """The output stem (no extension) for ``method`` applied to the model ``name``.

    normal/regular/shortcut: ``prune_normal_0.5_yolov3``; slim: ``prune_slim_0.8_keep_0.01_yolov3``;
    layer: ``prune_layer_8_shortcut_yolov3``; layer-channel: ``prune_layer-channel_0.6_keep_0.01_8_shortcut_yolov3``;
    eagleeye: ``prune_eagleeye-normal_0.5_200_yolov3`` (pool, percent, candidates).  Numbers use ``%g``."""
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    parts = ["prune", method if method != "eagleeye" else f"eagleeye-{pool}"]
    if method != "layer":
        parts.append(f"{percent:g}")
    if method in ("slim", "layer-channel"):
        parts += ["keep", f"{layer_keep:g}"]
    if method in ("layer", "layer-channel"):
        parts += [str(shortcuts), "shortcut"]
    if method == "eagleeye":
        parts.append(str(candidates))
    return "_".join(parts + [name])
