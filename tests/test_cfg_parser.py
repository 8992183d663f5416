"""Cfg syntax and validation errors: every error names the file and the line."""

from __future__ import annotations

import pytest
from yolocomp.errors import CfgError
from yolocomp.models import Darknet, parse_cfg, read_cfg

BASE = """[net]
width=64
height=64
channels=3
batch=16

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=10,13, 16,30, 33,23
classes=4
num=3
jitter=.3
ignore_thresh = .7
"""


def _build(tmp_path, text, name="bad.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return Darknet.from_cfg(p), str(p)


def _error(tmp_path, text, name="bad.cfg") -> tuple[str, str]:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(CfgError) as ei:
        Darknet.from_cfg(p)
    return str(ei.value), str(p)


def test_parse_syntax_whitespace_comments_case():
    text = "# c\n; c2\n[NET]\nwidth = 32\n[Convolutional]\nfil ters=4\nactivation=linear\n\n[yolo]\nmask = 0\n"
    secs = parse_cfg(text, "x.cfg")
    assert [s.type for s in secs] == ["net", "convolutional", "yolo"]
    assert [s.index for s in secs] == [-1, 0, 1]
    assert secs[0].options == {"width": "32"}
    assert secs[1].options == {"filters": "4", "activation": "linear"}
    assert secs[1].line == 5 and secs[1].key_lines["filters"] == 6
    assert secs[2].options["mask"] == "0"


def test_base_builds_and_reports_ignored_keys(tmp_path):
    m, _ = _build(tmp_path, BASE)
    assert (-1, "batch") in m.ignored_keys
    assert m.yolo_layers[0].loss_options == {"jitter": 0.3, "ignore_thresh": 0.7}
    assert m.net.width == 64 and m.net.channels == 3


@pytest.mark.parametrize("text,line,needle", [
    ("", None, "empty cfg"),
    ("# only a comment\n", None, "empty cfg"),
    ("width=3\n[net]\n", 1, "key outside any section"),
    ("[net]\nwidth=3\nwidth=4\n", 3, "duplicate key 'width' (first set on line 2)"),
    ("[net]\n[bogus]\n", 2, "unknown section [bogus]; known sections: net, network"),
    ("[convolutional]\n", 1, "first section must be [net]"),
    ("[net]\nwidth\n", 2, "expected key=value"),
])
def test_syntax_errors(tmp_path, text, line, needle):
    p = tmp_path / "syn.cfg"
    p.write_text(text)
    with pytest.raises(CfgError) as ei:
        read_cfg(p)
    msg = str(ei.value)
    assert needle in msg
    assert msg.startswith(f"{p}:{line}:" if line else f"{p}:")


def test_unknown_section_lists_known(tmp_path):
    msg, p = _error(tmp_path, BASE + "\n[bogus]\n")
    assert msg.startswith(f"{p}:30:")
    for known in ("convolutional", "route", "shortcut", "yolo", "maxpool"):
        assert known in msg


def test_missing_file():
    with pytest.raises(CfgError, match="nope.cfg: cannot read"):
        read_cfg("nope.cfg")


@pytest.mark.parametrize("old,new,line,needle", [
    ("filters=8", "filters=abc", 9, "[convolutional] filters: expected an integer, got 'abc'"),
    ("activation=leaky", "activation=leeky", 13, "unknown activation 'leeky'"),
    ("stride=2", "stride=2\ndilation=2", 12, "dilation: value 2 is not supported"),
    ("pad=1\nactivation=leaky", "pad=1\nactivation=leaky\nfoo=1", 14, "[convolutional] foo: unknown key"),
    ("filters=18", "filters=17", 16, "filters=17 but the [yolo] on line 22 needs len(mask)*(classes+5) = 2*(4+5) = 18"),
    ("mask=0,1", "mask=0,5", 23, "mask: every mask index must be in [0, num=3)"),
    ("anchors=10,13, 16,30, 33,23", "anchors=10,13, 16,30", 24, "anchors: expected num=3 anchor pairs"),
    ("width=64", "width=64\nfoo=1", 3, "[net] foo: unknown key"),
])
def test_value_errors(tmp_path, old, new, line, needle):
    assert old in BASE
    msg, p = _error(tmp_path, BASE.replace(old, new, 1))
    assert needle in msg
    assert msg.startswith(f"{p}:{line}:")


ROUTE_NET = """[net]
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters={f1}
size=3
stride=1
pad=1
activation=leaky

[{kind}]
{key}={ref}

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=10,13, 16,30, 33,23
classes=4
num=3
"""


@pytest.mark.parametrize("kind,key,ref", [("route", "layers", "3"), ("shortcut", "from", "2"),
                                          ("route", "layers", "-3"), ("shortcut", "from", "-5")])
def test_reference_to_later_or_missing_layer(tmp_path, kind, key, ref):
    msg, p = _error(tmp_path, ROUTE_NET.format(f1=16, kind=kind, key=key, ref=ref))
    assert msg.startswith(f"{p}:21:")
    assert "not an earlier layer (this is layer 2)" in msg


def test_shortcut_channel_mismatch(tmp_path):
    # previous layer (1) has 32 channels, from-layer 0 only 16: DK would silently leave 16 channels unsummed
    msg, p = _error(tmp_path, ROUTE_NET.format(f1=32, kind="shortcut", key="from", ref="-2"))
    assert msg.startswith(f"{p}:21:")
    assert "channel mismatch: layer 0 has 16 channels, fewer than the 32 of the previous layer 1" in msg


def test_shortcut_from_wider_layer_is_dk_overlap(tmp_path):
    # from-layer 0 has 16 channels, previous 8: DK adds the first 8 (yolov3-tiny-prn, enet-coco)
    m, _ = _build(tmp_path, ROUTE_NET.format(f1=8, kind="shortcut", key="from", ref="-2"))
    assert m.layers[2].out_channels == 8 and m.layers[2].inputs == [1, 0]


def test_route_group_errors(tmp_path):
    text = ROUTE_NET.format(f1=16, kind="route", key="layers", ref="-1\ngroups=2\ngroup_id=2")
    msg, p = _error(tmp_path, text)
    assert msg.startswith(f"{p}:23:") and "group_id: must be in [0, groups=2)" in msg


def test_yolo_classes_mismatch_between_heads(tmp_path):
    extra = "\n[route]\nlayers=-3\n\n[convolutional]\nfilters=20\nsize=1\nactivation=linear\n\n[yolo]\nmask=0\n" \
            "anchors=10,13, 16,30, 33,23\nclasses=15\nnum=3\n"
    msg, p = _error(tmp_path, BASE + extra)
    assert "all [yolo] layers must have the same classes" in msg and msg.startswith(f"{p}:")
