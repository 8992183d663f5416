"""Layer pruning: remove whole Darknet residual blocks (pruning-spec §7) and its combination with channel pruning (§8).

A removable block is the triple (1×1 CBL t−1, 3×3 CBL t, ``[shortcut]`` t+1 with ``from=-3``, linear): its output
is the block input plus the residual branch, so deleting the three layers leaves the block input flowing on.  Blocks
are ranked by the mean |γ| of conv t, ascending (TAN since ``46d3bd2``), and the first ``n`` are removed.  Surviving
layers keep their weights (TAN; SPURS at HEAD saves fresh weights, a bug not repeated, spec §7.7).  References to a
removed layer resolve to the previous surviving layer, which carries the same stream value; this is TAN's route
re-indexing (spec §7.6 / fact 16) for every form a reference can take.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from ..errors import InputError
from ..models.darknet import Darknet
from ..models.layers_darknet import (
    ConvLayer,
    DropoutLayer,
    MaxPoolLayer,
    RouteLayer,
    ShortcutLayer,
    UpsampleLayer,
)
from .surgery import fold_constant

_PASS_THROUGH = (UpsampleLayer, MaxPoolLayer, DropoutLayer)


@dataclass
class LayerPruneResult:
    """``model``: the pruned Darknet (a new model); ``blocks``: the removed blocks, named by their 3×3 conv t, in
    ranking order; ``scores``: mean |γ_t| of every candidate block (t -> score); ``removed``: the removed layer
    indices (ascending, 3 per block); ``index_map``: old index -> new index of every surviving layer."""

    model: Darknet
    blocks: list[int]
    scores: dict[int, float]
    removed: list[int]
    index_map: dict[int, int]


def _is_bn_conv(m: nn.Module) -> bool:
    return isinstance(m, ConvLayer) and m.bn is not None


def block_candidates(model: Darknet) -> list[int]:
    """Indices t (the 3×3 conv before a ``[shortcut]``) of every removable residual block, ascending.

    A block qualifies when layer t+1 is a linear shortcut of exactly (t, t−2) with equal channel counts, t−1 and t
    are batch-normalized convs reading t−2 and t−1, and no other layer reads t−1 or t.  yolov3 and yolov4: 23."""
    layers = model.layers
    readers: dict[int, set[int]] = {}
    for j, m in enumerate(layers):
        for k in m.inputs:
            readers.setdefault(k, set()).add(j)
    out = []
    for i, m in enumerate(layers):
        t = i - 1
        if not isinstance(m, ShortcutLayer) or t < 2 or m.inputs != [t, t - 2] or m.activation != "linear":
            continue
        a, b = layers[t - 1], layers[t]
        if not (_is_bn_conv(a) and _is_bn_conv(b) and a.inputs == [t - 2] and b.inputs == [t - 1]):
            continue
        if layers[t - 2].out_channels != m.out_channels:
            continue
        if readers.get(t - 1, set()) - {t} or readers.get(t, set()) - {t + 1}:
            continue
        out.append(t)
    return out


def rank_blocks(model: Darknet, candidates: Iterable[int] | None = None) -> list[tuple[int, float]]:
    """``[(t, mean |γ_t|)]`` for the candidate blocks, ascending by score (stable: ties keep layer order)."""
    cands = block_candidates(model) if candidates is None else list(candidates)
    scores = [(t, float(model.layers[t].bn.weight.detach().abs().mean())) for t in cands]
    return sorted(scores, key=lambda ts: ts[1])


def remove_layers(model: Darknet, removed: Iterable[int]) -> tuple[Darknet, dict[int, int]]:
    """A new Darknet without the ``removed`` layers, and the map old -> new index of the survivors.

    Every reference (route ``layers``, shortcut ``from``, implicit previous layer) to a removed layer is redirected
    to the closest surviving layer before it; the caller guarantees that layer carries the same value (true for
    whole residual blocks whose branch is dropped).  Surviving layers get their parameters and buffers copied, so
    the result is ready for evaluation or fine-tuning."""
    gone = {int(i) for i in removed}
    n = len(model.layers)
    bad = sorted(i for i in gone if not 0 <= i < n)
    if bad:
        raise InputError(getattr(model, "path", None), f"cannot remove layers {bad}: the model has {n} layers")
    index_map: dict[int, int] = {}
    for i in range(n):
        if i not in gone:
            index_map[i] = len(index_map)

    def resolve(j: int) -> int:
        while j in gone:
            j -= 1
        return -1 if j < 0 else index_map[j]

    rewired = []
    for i in range(n):
        if i in gone:
            continue
        layer = copy.copy(model.layers[i])      # shallow: shares weights, only ``inputs`` is rebound
        layer.inputs = [resolve(j) for j in model.layers[i].inputs]
        rewired.append(layer)
    # Darknet.to_cfg only reads ``net`` and ``layers``; a stand-in avoids building a model just to write its cfg
    text = Darknet.to_cfg(SimpleNamespace(net=model.net, layers=rewired))
    new = Darknet.from_cfg(text)
    new.path = getattr(model, "path", None)
    for old, j in index_map.items():
        new.layers[j].load_state_dict(model.layers[old].state_dict())
    new.to(next(model.parameters()).device)
    new.train(model.training)
    return new, index_map


def compensate_blocks(model: Darknet, blocks: Iterable[int]) -> Darknet:
    """A copy of ``model`` in which the constant each removed block leaves in the residual stream is folded into
    the later convs (spec §7.5), so that after the blocks are deleted the eval-mode output equals that of the
    model with γ of convs t−1 and t zeroed (β kept) wherever the absorbing conv's window lies inside the image.

    Once γ_t = 0, conv t emits act(β_t) in eval mode; the shortcut adds it to the stream, where it rides through
    later shortcuts (``a = Σ a_inputs``), routes (concatenated), upsample/maxpool/dropout (unchanged) until a conv
    absorbs it.  Unlike channel pruning the stream's channels all survive, so constants are carried on kept
    channels too, which is why this is not :func:`yolocomp.prune.surgery.keep_size`."""
    out = copy.deepcopy(model)
    ts = set(blocks)
    const: list[torch.Tensor] = []
    for i, m in enumerate(out.layers):
        a_in = [const[j] if j >= 0 else torch.zeros(out.net.channels, dtype=torch.float64) for j in m.inputs]
        a = torch.zeros(m.out_channels, dtype=torch.float64)
        if isinstance(m, ConvLayer):
            if i in ts:
                with torch.no_grad():
                    a = m.act(m.bn.bias.detach()).double().cpu()
            elif i + 1 not in ts and bool(a_in[0].any()):
                fold_constant(m, a_in[0])
        elif isinstance(m, ShortcutLayer):
            a = sum(x[:m.out_channels] for x in a_in)
            if bool(a.any()) and m.activation != "linear":
                raise InputError(getattr(model, "path", None), f"layer {i}: a removed block's constant reaches a "
                                                               f"[shortcut] with activation={m.activation}")
        elif isinstance(m, RouteLayer):
            a = torch.cat([x.chunk(m.groups)[m.group_id] for x in a_in])
        elif isinstance(m, _PASS_THROUGH):
            a = a_in[0]
        elif any(bool(x.any()) for x in a_in):
            raise InputError(getattr(model, "path", None), f"layer {i} ([{m.section_type}]) cannot pass on the "
                                                           f"constant of a removed block")
        const.append(a)
    return out


def layer_prune(model: Darknet, n: int, compensate: bool = True) -> LayerPruneResult:
    """Remove the ``n`` residual blocks with the smallest mean |γ| of their 3×3 conv (spec §7; TAN default n = 8).

    compensate: first fold the constant the removed branch leaves behind into the later convs
    (:func:`compensate_blocks`), as TAN does; off, the surviving weights are copied unchanged, which is exact when
    the removed branches output zero.  yolov3: 107 layers -> 107 − 3n."""
    ranked = rank_blocks(model)
    if not 0 <= n <= len(ranked):
        raise InputError(getattr(model, "path", None), f"cannot remove {n} blocks: the model has {len(ranked)} "
                                                       f"removable residual blocks")
    blocks = [t for t, _ in ranked[:n]]
    source = compensate_blocks(model, blocks) if compensate and blocks else model
    removed = sorted(i for t in blocks for i in (t - 1, t, t + 1))
    new, index_map = remove_layers(source, removed)
    return LayerPruneResult(new, blocks, dict(ranked), removed, index_map)


def layer_channel_prune(model: Darknet, n: int = 8, percent: float = 0.6, layer_keep: float = 0.01,
                        compensate: bool = True) -> tuple[dict[int, torch.Tensor], LayerPruneResult]:
    """Layer + channel pruning (spec §8, TAN/SPURS layer_channel_prune): slim channel masks
    (:func:`yolocomp.prune.select.slim` with ``percent``, ``layer_keep``), the compact model built from them
    (:func:`yolocomp.prune.surgery.compact`, offsets folded), then :func:`layer_prune` of ``n`` blocks on that
    compact model, so blocks are ranked by the mean |γ_t| of their *surviving* channels.

    Returns ``(masks, result)``: the slim masks over the original layer indices and the layer-pruning result on the
    compact model (``result.index_map`` maps compact-model indices, which equal the original ones, to the final
    model's).  Defaults are TAN's (8 blocks, 0.6, 0.01)."""
    from .graph import analyze
    from .select import slim
    from .surgery import compact

    masks = slim(model, analyze(model), percent, layer_keep)
    return masks, layer_prune(compact(model, masks), n, compensate)
