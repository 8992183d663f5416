"""Teacher side of distillation: forward hooks, the frozen teacher, layer pairing and hint layers (facts 26, 28)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from yolocomp.distill.teacher import (
    FeatureTap,
    HintLayers,
    Teacher,
    check_pairs,
    feature_layers,
    head_conv_pairs,
    layer_shapes,
    match_layers,
    pair_layers,
)
from yolocomp.errors import InputError
from yolocomp.models import zoo
from yolocomp.prune import select
from yolocomp.prune.graph import analyze
from yolocomp.prune.surgery import compact


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return zoo.build("yolov3-tiny", 6).eval()


def test_feature_tap_keeps_the_hooked_layer_outputs(tiny):
    tap = FeatureTap(tiny, [4, 13])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        tiny(x)
        y = x
        for layer in tiny.layers[:5]:
            y = layer(y)
    f4, f13 = tap.features()
    assert torch.equal(f4, y) and f13.shape == (2, 256, 2, 2)
    tap.remove()
    assert not tiny.layers[4]._forward_hooks
    with pytest.raises(InputError, match="out of range"):
        FeatureTap(tiny, [99])


def test_teacher_is_frozen_and_returns_raw_maps(tiny):
    t = Teacher(tiny, [8])
    raw, decoded, feats = t(torch.rand(2, 3, 64, 64))
    assert [tuple(r.shape) for r in raw] == [(2, 3, 2, 2, 11), (2, 3, 4, 4, 11)]
    assert decoded.shape == (2, 3 * (4 + 16), 11) and feats[0].shape == (2, 256, 4, 4)
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training
    assert not raw[0].requires_grad
    t.remove()
    with pytest.raises(InputError, match="mode"):
        Teacher(tiny, [], mode="frozen")


def test_spurs_feature_list_skips_head_convs(tiny):
    assert feature_layers(tiny) == [0, 2, 4, 6, 8, 10, 12, 13, 14, 18, 21]


def test_pairs_are_formed_after_sorting_and_need_equal_counts():     # facts 26, 28
    assert pair_layers([61, 36], [12, 5]) == [(36, 5), (61, 12)]
    with pytest.raises(InputError, match="feature mismatch"):
        pair_layers([36, 61], [12])


def _pruned(model):
    model = copy.deepcopy(model)
    with torch.no_grad():             # trained-looking γ, so that the normal prune removes something
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=torch.Generator().manual_seed(m.num_features)))
    return compact(model, select.normal(model, analyze(model), 0.5))


def test_pruned_student_pairs_with_same_indices(tiny):
    student = _pruned(tiny)
    pairs = pair_layers(feature_layers(tiny), feature_layers(student))
    channels = check_pairs(tiny, student, pairs, 64)
    assert all(t == s for t, s in pairs)
    assert any(ct != cs for ct, cs in channels) and all(ct >= cs for ct, cs in channels)
    assert match_layers(tiny, student, [8, 13], 64) == [8, 13]
    assert head_conv_pairs(tiny, student, 64) == [(15, 15), (22, 22)]
    with pytest.raises(InputError, match="differs in size"):
        check_pairs(tiny, student, [(4, 8)], 64)


@pytest.mark.slow          # builds YOLOv3 (62 M parameters)
def test_andrey_hint_layer_for_teacher_36_and_nano_12():            # fact 28
    teacher, nano = zoo.build("yolov3", 20), zoo.build("yolo-nano-leaky", 20)
    channels = check_pairs(teacher, nano, pair_layers([36], [12]), 64)
    assert channels == [(256, 150)]
    hints = HintLayers(channels)
    conv, act = hints.adapt[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.bias is not None) == (150, 256, (1, 1), True)
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.1
    out = hints([torch.rand(2, 150, 8, 8)])
    assert out[0].shape == (2, 256, 8, 8)
    # equal channel counts pass through unless a layer is asked for on every pair (ANDREY)
    assert isinstance(HintLayers([(64, 64)]).adapt[0], nn.Identity)
    assert isinstance(HintLayers([(64, 64)], always=True).adapt[0], nn.Sequential)
    # a student of another architecture: same H×W, nearest relative depth
    assert match_layers(teacher, nano, [36], 64) == [12]
    assert layer_shapes(nano, 64)[12] == (150, 8, 8)
