"""Channel-mask selection from BN γ (pruning-spec.md §2, §4).

A mask set is ``dict[int, torch.BoolTensor]``: conv layer index -> keep mask over its output channels (C,).  Every
function returns a mask for every conv of ``graph.convs`` (all True outside the pool) and never empties a layer.

Pools: the *normal* pool is ``graph.prunable`` minus every member of a shortcut or coupled group (those are skipped,
as in the seeds' normal prune); the *shortcut/slim* pool is all of ``graph.prunable``.
"""

from __future__ import annotations

import torch

from ..models.darknet import Darknet
from ..registry import PRUNERS
from .graph import PruneGraph

Masks = dict[int, torch.Tensor]


def gammas(model: Darknet, layers: list[int]) -> dict[int, torch.Tensor]:
    """|γ| (C,) of the BN of each listed conv, detached, float32."""
    return {i: model.layers[i].bn.weight.detach().abs().float().clone() for i in layers}


def normal_pool(graph: PruneGraph) -> list[int]:
    """Prunable convs that belong to no shortcut or coupled group."""
    grouped = {i for g in graph.shortcut_groups + graph.coupled for i in g}
    return [i for i in graph.prunable if i not in grouped]


def global_threshold(gs: dict[int, torch.Tensor], percent: float) -> float:
    """thr = sortedAsc(all |γ| of the pool)[int(N·percent)] (§2.1); percent in [0, 1)."""
    if not 0.0 <= percent < 1.0:
        raise ValueError(f"percent must be in [0, 1), got {percent}")
    if not gs:
        raise ValueError("the pool of prunable layers is empty")
    s = torch.cat(list(gs.values())).sort().values
    return float(s[int(len(s) * percent)])


def percent_limit(gs: dict[int, torch.Tensor]) -> float:
    """Largest percent whose threshold (``keep |γ| >= thr``) empties no layer: (last index of a value <=
    highest_thre in the sorted pool) / N, with highest_thre = min over layers of max |γ| (§2.2; tie-safe)."""
    s = torch.cat(list(gs.values()))
    highest = min(float(g.max()) for g in gs.values())
    return (int((s <= highest).sum()) - 1) / len(s)


def _all_ones(model: Darknet, graph: PruneGraph) -> Masks:
    return {i: torch.ones(model.layers[i].out_channels, dtype=torch.bool) for i in graph.convs}


def _check_not_empty(gs: dict[int, torch.Tensor], masks: Masks, percent: float) -> None:
    empty = [i for i in gs if not bool(masks[i].any())]
    if empty:
        raise ValueError(f"percent {percent} would remove every channel of layer(s) {empty}; the largest usable "
                         f"percent for this model is {percent_limit(gs):.4f}")


def _top(g: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.zeros(len(g), dtype=torch.bool)
    keep[torch.argsort(g, descending=True, stable=True)[:n]] = True
    return keep


def normal(model: Darknet, graph: PruneGraph, percent: float) -> Masks:
    """Normal prune (§4.1): keep |γ| >= thr over the normal pool; ValueError if a layer would be emptied."""
    gs = gammas(model, normal_pool(graph))
    thr = global_threshold(gs, percent)
    masks = _all_ones(model, graph)
    for i, g in gs.items():
        masks[i] = g >= thr
    _check_not_empty(gs, masks, percent)
    return masks


def regular(model: Darknet, graph: PruneGraph, percent: float, multiple: int = 8) -> Masks:
    """Regular prune (§4.4) with a width quantum ``multiple``: over the normal pool, n = #(|γ| >= thr) is rounded
    up to a multiple of ``multiple`` (at most C; an emptied layer keeps ``multiple``), keeping the top-n' |γ|."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    gs = gammas(model, normal_pool(graph))
    thr = global_threshold(gs, percent)
    masks = _all_ones(model, graph)
    for i, g in gs.items():
        n = int((g >= thr).sum())
        n = max(-(-n // multiple) * multiple, multiple)
        masks[i] = _top(g, min(n, len(g)))
    return masks


def shortcut(model: Darknet, graph: PruneGraph, percent: float) -> Masks:
    """Shortcut prune (§4.2): keep |γ| >= thr, thresholding every prunable conv except the non-root members of
    shortcut/coupled groups (TAN's pool), then every member takes its group root's mask.  ValueError if a layer
    would be emptied."""
    followers = {i: g[0] for g in graph.shortcut_groups + graph.coupled for i in g[1:]}
    gs = gammas(model, [i for i in graph.prunable if i not in followers])
    thr = global_threshold(gs, percent)
    masks = _all_ones(model, graph)
    for i, g in gs.items():
        masks[i] = g >= thr
    _check_not_empty(gs, masks, percent)
    for i in graph.prunable:
        if i in followers:
            masks[i] = masks[followers[i]].clone()
    return masks


def slim(model: Darknet, graph: PruneGraph, percent: float, layer_keep: float = 0.01) -> Masks:
    """Slim prune (§4.3): keep |γ| > thr over all prunable convs, then at least max(int(C·layer_keep), 1) per
    layer (the top by |γ|), then every shortcut/coupled group gets the OR of its members' masks (a protected
    member keeps the whole group)."""
    if not 0.0 <= layer_keep <= 1.0:
        raise ValueError(f"layer_keep must be in [0, 1], got {layer_keep}")
    gs = gammas(model, graph.prunable)
    thr = global_threshold(gs, percent)
    masks = _all_ones(model, graph)
    for i, g in gs.items():
        keep = g > thr
        min_keep = max(int(len(g) * layer_keep), 1)
        masks[i] = keep if int(keep.sum()) >= min_keep else _top(g, min_keep)
    for group in graph.shortcut_groups + graph.coupled:
        merged = torch.stack([masks[i] for i in group]).any(0)
        for i in group:
            masks[i] = merged.clone()
    return masks


for _name, _fn, _seeds in (("normal", normal, "TAN, SPURS, HALO"), ("regular", regular, "SPURS"),
                           ("shortcut", shortcut, "TAN, SPURS"), ("slim", slim, "TAN, SPURS")):
    PRUNERS.register(_name, _fn, kind="channel", seeds=_seeds)
