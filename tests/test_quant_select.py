"""Stage-wise layer selection (``--qlayers``): acceptance fact 19, the graph-derived backbone end of every zoo model,
scheme names and bad input."""

from __future__ import annotations

import pytest
from yolocomp.errors import InputError
from yolocomp.models import zoo
from yolocomp.models.layers_darknet import ConvLayer
from yolocomp.quant import backbone_end, quantize_model, scheme_name, select_layers
from yolocomp.registry import MODELS, QUANTIZERS

# the cfg's "####" separator where a darknet cfg writes one; the end of the named backbone elsewhere
BACKBONE_END = {
    "yolov3": 74, "yolov3-tiny": 12, "yolov3-spp": 74, "yolov4": 104, "yolov4-tiny": 26, "yolov3-tiny-prn": 13,
    "enet-coco": 131, "yolo-nano": 23, "yolo-nano-leaky": 23, "yolov3-mobile": 74, "yolov3-mobile-leaky": 74,
    "yolov3-mobilenetv3": 64, "yolov3tiny-mobilenetv3-small": 49, "yolov3-ghostnet": 139,
    "yolov3-shufflenetv2": 8, "yolov3-tiny-se": 13, "yolov3-tiny-cbam": 14, "yolov3-tiny-eca": 13,
}


# the fake-quant graphs are many small ops: on a shared 2-core machine one thread is several times faster
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def yolov3():
    return zoo.build("yolov3", 1)


def test_every_zoo_model_has_a_pinned_backbone_end():
    assert sorted(BACKBONE_END) == sorted(MODELS.names())


@pytest.mark.parametrize("name", sorted(BACKBONE_END))
def test_backbone_end(name):
    assert backbone_end(zoo.build(name, 1)) == BACKBONE_END[name]


def test_fact19_qlayers_on_yolov3(yolov3):
    assert select_layers(yolov3, 63) == [63, 64, 66, 67, 69, 70, 72, 73]
    assert select_layers(yolov3, -1) == []
    convs = [i for i, m in enumerate(yolov3.layers) if isinstance(m, ConvLayer)]
    assert select_layers(yolov3, 0) == [i for i in convs if i <= 74] and len(select_layers(yolov3, 0)) == 52
    assert select_layers(yolov3, 74) == []                      # SPURS: 74 = "no layer"
    assert select_layers(yolov3, 38) == [i for i in convs if 38 <= i <= 74]
    assert select_layers(yolov3, 0, heads=True) == convs        # DoReFa / 8-bit: every conv


def test_fact19_qlayers_on_yolov3_tiny():
    tiny = zoo.build("yolov3-tiny", 1)
    for q in (13, 24, 72):
        assert select_layers(tiny, q) == []
    assert select_layers(tiny, 0) == [0, 2, 4, 6, 8, 10, 12]
    # SPURS' hard-coded bound (0..74) on tiny: q = 0 binarizes every conv, the head convs included
    assert select_layers(tiny, 0, end=74) == [i for i, m in enumerate(tiny.layers) if isinstance(m, ConvLayer)]


def test_blocks_count_as_quantizable_layers():
    nano = zoo.build("yolo-nano", 1)
    sel = select_layers(nano, 20)
    assert sel == [20, 21, 22, 23]      # [pep]/[ep] blocks, each holding several conv units
    q = quantize_model(nano, "bwn", qlayers=20)
    assert q.quant_spec["layers"] == sel


def test_scheme_names_and_spurs_numbers():
    assert QUANTIZERS.names() == ["bnn", "bwn", "dorefa", "qat8", "pow2", "ptq8"]
    assert [scheme_name(n) for n in (-1, 0, 1, 2, 3)] == [None, "bnn", "bwn", "dorefa", "qat8"]
    assert scheme_name("2") == "dorefa" and scheme_name("pow2") == "pow2"
    for e in QUANTIZERS:
        assert {"origin", "seed_file", "spec", "kind"} <= set(e.meta)


def test_bad_input_is_clear(yolov3):
    with pytest.raises(InputError, match="qlayers"):
        select_layers(yolov3, -2)
    with pytest.raises(InputError, match="unknown quantization scheme 'int4'"):
        quantize_model(yolov3, "int4")
    with pytest.raises(InputError, match="SPURS modes"):
        scheme_name(7)
    with pytest.raises(InputError, match="no option.*bits.*valid: levels, activations"):
        quantize_model(yolov3, "bnn", bits=4)


def test_mode_minus_one_is_float(yolov3):
    q = quantize_model(yolov3, -1)
    assert not hasattr(q, "quant_spec") and set(q.state_dict()) == set(yolov3.state_dict())
