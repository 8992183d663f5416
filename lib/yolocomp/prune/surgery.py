"""Model surgery for channel masks (pruning-spec.md §5, §6): the keep-size model with the removed channels'
activation offsets folded into their consumers, and the compact model built from a rewritten cfg.

Masks are ``dict[int, torch.BoolTensor]`` (conv layer index -> keep mask (C,) over its output channels); a conv
missing from the dict keeps every channel.
"""

from __future__ import annotations

import copy

import torch

from ..models.darknet import Darknet
from ..models.layers_darknet import (
    ConvLayer,
    DropoutLayer,
    MaxPoolLayer,
    RouteLayer,
    ShortcutLayer,
    UpsampleLayer,
)
from ..models.parse import parse_cfg
from .graph import PruneGraph, analyze

_PASS_THROUGH = (UpsampleLayer, MaxPoolLayer, DropoutLayer)


def check_masks(model: Darknet, masks: dict[int, torch.Tensor], graph: PruneGraph | None = None) -> PruneGraph:
    """ValueError unless every mask is a bool (C,) of a BN conv, non-empty, removes channels only from prunable
    convs, and is identical across each shortcut/coupled group.  Returns the graph."""
    graph = graph or analyze(model)
    convs, prunable = set(graph.convs), set(graph.prunable)
    for i, m in masks.items():
        if i not in convs:
            raise ValueError(f"mask for layer {i}, which is not a [convolutional] with batch_normalize=1")
        c = model.layers[i].out_channels
        if m.dtype != torch.bool or m.shape != (c,):
            raise ValueError(f"mask of layer {i} must be a bool tensor of shape ({c},), got {m.dtype} {tuple(m.shape)}")
        if not bool(m.any()):
            raise ValueError(f"mask of layer {i} removes every channel")
        if not bool(m.all()) and i not in prunable:
            raise ValueError(f"layer {i} is protected (its channels feed a block that cannot be pruned) but its mask "
                             f"removes {int((~m).sum())} channels")
    for group in graph.shortcut_groups + graph.coupled:
        ref = _mask(model, masks, group[0])
        for i in group[1:]:
            if not torch.equal(ref, _mask(model, masks, i)):
                raise ValueError(f"layers {group} must share one mask (shortcut/depthwise coupling); layer {i} "
                                 f"differs from layer {group[0]}")
    return graph


def _mask(model: Darknet, masks: dict[int, torch.Tensor], i: int) -> torch.Tensor:
    m = masks.get(i)
    return m.cpu() if m is not None else torch.ones(model.layers[i].out_channels, dtype=torch.bool)


def fold_constant(layer: ConvLayer, a_in: torch.Tensor) -> None:
    """Absorb a constant a_in (C_in,) that disappears from the conv's input: offset = K·a_in with K the kernel
    summed over space (per group), into the BN running mean (μ −= offset) or the conv bias (b += offset)."""
    w = layer.conv.weight.detach().double()
    g = layer.conv.groups
    out, cin_g = w.shape[0], w.shape[1]
    k = w.sum((2, 3)).view(g, out // g, cin_g)
    offset = torch.einsum("goc,gc->go", k, a_in.double().view(g, cin_g)).reshape(out)
    with torch.no_grad():
        if layer.bn is not None:
            layer.bn.running_mean -= offset.to(layer.bn.running_mean)
        else:
            layer.conv.bias += offset.to(layer.conv.bias)


def _walk(model: Darknet, masks: dict[int, torch.Tensor], fold: bool) -> list[torch.Tensor]:
    """Per layer, the keep mask of its output channels; with ``fold`` also zero γ/β of removed channels and fold
    their constant act(β) into the consumers (in place on ``model``)."""
    keep: list[torch.Tensor] = []
    const: list[torch.Tensor] = []
    n_in = model.net.channels

    def k_of(j: int) -> torch.Tensor:
        return torch.ones(n_in, dtype=torch.bool) if j < 0 else keep[j]

    def a_of(j: int) -> torch.Tensor:
        return torch.zeros(n_in, dtype=torch.float64) if j < 0 else const[j]

    for i, m in enumerate(model.layers):
        c = m.out_channels
        a = torch.zeros(c, dtype=torch.float64)
        if isinstance(m, ConvLayer):
            a_in = a_of(m.inputs[0])
            if fold and bool(a_in.any()):
                fold_constant(m, a_in)
            k = _mask(model, masks, i) if m.bn is not None else torch.ones(c, dtype=torch.bool)
            if fold and not bool(k.all()):
                with torch.no_grad():
                    beta = m.bn.bias.detach()
                    a = m.act(torch.where(k.to(beta.device), torch.zeros_like(beta), beta)).double().cpu()
                    m.bn.weight[~k] = 0
                    m.bn.bias[~k] = 0
        elif isinstance(m, _PASS_THROUGH):
            k, a = k_of(m.inputs[0]), a_of(m.inputs[0])
        elif isinstance(m, RouteLayer):
            k = torch.cat([k_of(j).chunk(m.groups)[m.group_id] for j in m.inputs])
            a = torch.cat([a_of(j).chunk(m.groups)[m.group_id] for j in m.inputs])
        elif isinstance(m, ShortcutLayer):
            k = k_of(m.inputs[0])
            total = sum(a_of(j)[:c] for j in m.inputs)
            with torch.no_grad():
                a = torch.where(k, torch.zeros_like(total), m.act(total.float()).double())
        else:
            k = torch.ones(c, dtype=torch.bool)
        keep.append(k)
        const.append(a)
    return keep


def keep_size(model: Darknet, masks: dict[int, torch.Tensor]) -> Darknet:
    """A copy of ``model`` with the same shapes in which, for every removed channel, BN γ and β are zeroed and the
    constant act(β) that channel emitted in the masked model is folded into its consumers, through
    conv (into μ of the next BN, or the bias), route/concat, upsample, maxpool and shortcut (spec §5).

    Eval-mode outputs equal the γ-masked model's exactly where every consumer window lies inside the image (1×1 or
    unpadded consumers); with zero-padded k×k consumers they differ within k//2 pixels of the border (§5.4)."""
    check_masks(model, masks)
    out = copy.deepcopy(model)
    _walk(out, masks, fold=True)
    return out


def compact(model: Darknet, masks: dict[int, torch.Tensor]) -> Darknet:
    """The pruned network: a fresh :class:`Darknet` built from ``model``'s cfg with each masked conv's ``filters``
    (and a depthwise conv's ``groups``) set to its kept count, weights sliced from :func:`keep_size` (spec §6).
    Eval-mode outputs equal the keep-size model's up to float error.  Returned in ``model``'s train/eval mode."""
    ks = keep_size(model, masks)
    keep = _walk(ks, masks, fold=False)
    sections = parse_cfg(ks.to_cfg(), path=f"{model.path} (pruned)")
    for i, m in enumerate(ks.layers):
        if isinstance(m, ConvLayer) and not bool(keep[i].all()):
            n = str(int(keep[i].sum()))
            sections[i + 1].options["filters"] = n
            if m.conv.groups > 1:
                sections[i + 1].options["groups"] = n
    new = Darknet(sections)
    state = ks.state_dict()
    sliced = {}
    for key, target in new.state_dict().items():
        t = state[key]
        parts = key.split(".")
        if parts[0] == "layers" and isinstance(ks.layers[int(parts[1])], ConvLayer) and t.dim() > 0:
            i = int(parts[1])
            conv = ks.layers[i].conv
            t = t[keep[i].to(t.device)]
            if parts[-1] == "weight" and parts[2] == "conv" and conv.groups == 1:
                j = ks.layers[i].inputs[0]
                if j >= 0:
                    t = t[:, keep[j].to(t.device)]
        if t.shape != target.shape:
            raise RuntimeError(f"pruned shape mismatch at {key}: sliced {tuple(t.shape)}, cfg gives "
                               f"{tuple(target.shape)}")
        sliced[key] = t.clone()
    new.load_state_dict(sliced)
    new.train(model.training)
    return new.to(next(model.parameters()).device)
