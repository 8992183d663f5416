"""ShuffleNetV2 stage as one cfg block, ``[shuffle]`` (our spelling of HALO-old's hard-coded ``[stage2/3/4]``).

``[shuffle] filters=F units=U activation=A``: U ShuffleNetV2 units; the first down-samples by 2 (in -> F), the
others keep F.  As in HALO-old every conv inside a unit has a bias *and* is followed by BN (the official
ShuffleNetV2 has no conv biases); this is what the published 5,077,821-parameter model counts.
HALO-old's 1.5× trunk is ``filters=176 units=4 activation=leaky``, ``352 8 hswish``, ``704 4 hswish``.

.weights order per unit: down unit = left branch (depthwise, 1×1) then right branch (1×1, depthwise, 1×1);
basic unit = its right branch (1×1, depthwise, 1×1).  Each conv in the BN form followed by its bias
(beta, gamma, mean, var, weight, bias).
"""

from __future__ import annotations

import torch
from torch import nn

from .layer import BuildContext, DarknetLayer, Section, register_layer
from .layers_mobile import ConvBN, _act_name, _positive


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W) with channel g·(C/groups)+j moved to j·groups+g."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """One ShuffleNetV2 unit.  Down (stride 2): both branches see all ``cin`` channels, each gives ``cout/2``.
    Basic (stride 1, cin == cout): the first half passes through, the second half goes through the right branch.
    Output = channel_shuffle(concat[left, right]).  (N, cin, H, W) -> (N, cout, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, down: bool, act: str):
        super().__init__()
        half = cout // 2
        self.down = down
        if down:
            self.left = nn.Sequential(ConvBN(cin, cin, 3, 2, groups=cin, bias=True),
                                      ConvBN(cin, half, 1, act=act, bias=True))
            mid, stride, rin = cin, 2, cin
        else:
            self.left = None
            mid, stride, rin = half, 1, half
        self.right = nn.Sequential(ConvBN(rin, mid, 1, act=act, bias=True),
                                   ConvBN(mid, mid, 3, stride, groups=mid, bias=True),
                                   ConvBN(mid, half, 1, act=act, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            left, right = self.left(x), self.right(x)
        else:
            left, right = x.chunk(2, 1)
            right = self.right(right)
        return channel_shuffle(torch.cat([left, right], 1))

    def darknet_tensors(self) -> list[torch.Tensor]:
        units = (list(self.left) if self.down else []) + list(self.right)
        return [t for u in units for t in u.darknet_tensors()]


class ShuffleStage(DarknetLayer):
    """``[shuffle]``: a ShuffleNetV2 stage.  (N, in, H, W) -> (N, filters, H/2, W/2).  Keys: filters (even),
    units (>= 1), activation."""

    section_type = "shuffle"

    def __init__(self, cin: int, cout: int, units: int, act: str):
        super().__init__()
        self.units = nn.Sequential(ShuffleUnit(cin, cout, True, act),
                                   *[ShuffleUnit(cout, cout, False, act) for _ in range(units - 1)])
        self.act_name = act
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x)

    def cfg_options(self) -> list[tuple[str, str]]:
        return [("filters", str(self.out_channels)), ("units", str(len(self.units))), ("activation", self.act_name)]

    def darknet_tensors(self) -> list[torch.Tensor]:
        return [t for u in self.units for t in u.darknet_tensors()]


@register_layer("shuffle")
def build_shuffle(section: Section, ctx: BuildContext) -> ShuffleStage:
    cout = _positive(section, "filters")
    if cout % 2:
        raise section.error(f"filters must be even (two branches of filters/2), got {cout}", "filters")
    layer = ShuffleStage(ctx.in_channels, cout, _positive(section, "units"), _act_name(section, "leaky"))
    layer.inputs = [section.index - 1]
    return layer
