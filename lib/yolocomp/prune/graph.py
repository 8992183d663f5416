"""Channel-dependency analysis of a :class:`~yolocomp.models.darknet.Darknet` graph for channel pruning.

Every layer output is described as a list of *segments* ``(conv index or None, width)``: the output channels are the
concatenation of those convs' output channels (``None`` = channels no prunable conv owns, e.g. an SE block's output).
Walking the layers in order:

* ``[convolutional]`` with BN starts a new segment; a depthwise one (groups = in = out, with BN) is *coupled* to the
  conv that produces its input (channel c reads only input channel c, so both must lose the same channels); any other
  grouped conv protects its producers and itself.
* ``[route]`` concatenates segments; ``[upsample]``, ``[maxpool]`` and ``[dropout]`` pass them through unchanged.
* ``[shortcut]`` couples the convs it adds segment by segment (they must keep identical channel sets) when every
  input has the same segment widths; otherwise (a wider ``from`` layer, a non-conv input) it protects them.
* Any other layer (``[yolo]``, a ``[route]`` with ``groups``, SE/attention, depthwise/mobile/PEP/shuffle blocks ...)
  reads its input channels as a whole, so the convs feeding it are protected (never pruned).

On top of the graph rules the seeds' own exclusions are applied, so the candidate sets match the pruning spec's counts
(pruning-spec.md §3, §19 fact 3): the conv right before an ``[upsample]`` and the conv feeding an SPP block
(``maxpool`` then ``route``) are protected.  A BN conv (or a ``[shortcut]``) whose activation is not 0 at 0 (logistic) is protected because a
removed channel would still emit act(0) after its γ and β are zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass

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

_PASS_THROUGH = (UpsampleLayer, MaxPoolLayer, DropoutLayer)


@dataclass
class PruneGraph:
    """The pruning-relevant structure of a model (all entries are layer indices, ascending).

    convs: every ``[convolutional]`` layer with batch_normalize=1 (the candidates).
    prunable: the convs whose output channels may be pruned (the shortcut/slim set of the spec).
    consumers: layer index -> the layers that read its output.
    shortcut_groups: convs whose outputs are added through ``[shortcut]`` chains (one mask per group), each sorted,
      the first member is the group root (the conv that starts the residual stream).
    before_shortcut: the BN conv immediately before each ``[shortcut]``.
    coupled: the other groups of convs that must share one mask (a depthwise conv and its producer).
    """

    convs: list[int]
    prunable: list[int]
    consumers: dict[int, list[int]]
    shortcut_groups: list[list[int]]
    before_shortcut: list[int]
    coupled: list[list[int]]

    def group_of(self, i: int) -> list[int]:
        """The shortcut or coupled group holding conv ``i`` (``[i]`` when it is in none)."""
        for g in self.shortcut_groups + self.coupled:
            if i in g:
                return g
        return [i]


class _Groups:
    """Union-find over conv indices; the root of a set is its smallest member."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, i: int) -> int:
        self.parent.setdefault(i, i)
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _zero_at_zero(act: torch.nn.Module) -> bool:
    return float(act(torch.zeros(1)).abs()) == 0.0


def analyze(model: Darknet) -> PruneGraph:
    """Derive the :class:`PruneGraph` of ``model`` from its layers (no hard-coded indices)."""
    layers = list(model.layers)
    convs = [i for i, m in enumerate(layers) if isinstance(m, ConvLayer) and m.bn is not None]
    consumers: dict[int, list[int]] = {i: [] for i in range(len(layers))}
    for i, m in enumerate(layers):
        for j in m.inputs:
            if j >= 0:
                consumers[j].append(i)

    groups = _Groups()
    for i in convs:
        groups.find(i)
    protected: set[int] = set()
    added: set[int] = set()          # convs that enter a [shortcut] add
    segs: list[list[tuple[int | None, int]]] = []

    def in_segs(j: int) -> list[tuple[int | None, int]]:
        return [(None, model.net.channels)] if j < 0 else segs[j]

    def protect(*js: int) -> None:
        protected.update(k for j in js for k, _ in in_segs(j) if k is not None)

    for i, m in enumerate(layers):
        if isinstance(m, ConvLayer):
            src = in_segs(m.inputs[0])
            groups_n = m.conv.groups
            if groups_n > 1:
                depthwise = groups_n == m.conv.in_channels == m.conv.out_channels and m.bn is not None
                if depthwise and len(src) == 1 and src[0][0] is not None:
                    groups.union(i, src[0][0])
                else:
                    protect(m.inputs[0])
                    protected.add(i)
            segs.append([(i if m.bn is not None else None, m.out_channels)])
        elif isinstance(m, _PASS_THROUGH):
            segs.append(list(in_segs(m.inputs[0])))
        elif isinstance(m, RouteLayer) and m.groups == 1:
            segs.append([s for j in m.inputs for s in in_segs(j)])
        elif isinstance(m, ShortcutLayer):
            ins = [in_segs(j) for j in m.inputs]
            widths = [w for _, w in ins[0]]
            if _zero_at_zero(m.act) and sum(widths) == m.out_channels and all(
                    [w for _, w in s] == widths and all(k is not None for k, _ in s) for s in ins):
                for s in ins:
                    for (k0, _), (k, _) in zip(ins[0], s):
                        groups.union(k0, k)
                        added.add(k)
                segs.append(list(ins[0]))
            else:
                protect(*m.inputs)
                segs.append([(None, m.out_channels)])
        else:
            protect(*m.inputs)
            segs.append([(None, m.out_channels)])

    for i in convs:
        m = layers[i]
        nxt = [layers[k] for k in consumers[i]]
        spp_input = (i + 2 < len(layers) and isinstance(layers[i + 1], MaxPoolLayer)
                     and isinstance(layers[i + 2], RouteLayer))
        if any(isinstance(n, UpsampleLayer) for n in nxt) or spp_input or not _zero_at_zero(m.act):
            protected.add(i)

    members: dict[int, list[int]] = {}
    for i in convs:
        members.setdefault(groups.find(i), []).append(i)
    bad_roots = {groups.find(i) for i in protected if i in groups.parent}
    prunable = [i for i in convs if groups.find(i) not in bad_roots]
    added_roots = {groups.find(i) for i in added}
    shortcut_groups = [g for r, g in sorted(members.items()) if r in added_roots and len(g) > 1]
    coupled = [g for r, g in sorted(members.items()) if r not in added_roots and len(g) > 1]
    before = [i - 1 for i, m in enumerate(layers)
              if isinstance(m, ShortcutLayer) and i > 0 and (i - 1) in groups.parent]
    return PruneGraph(convs, prunable, consumers, shortcut_groups, before, coupled)
