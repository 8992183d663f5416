"""Distillation inside the trainer: the teacher never changes, hint layers learn with the student, the KD terms are
logged, and the ``train`` CLI's ``--t_cfg --t_weights --KDstr --kd_features`` flags."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.distill import make
from yolocomp.distill.teacher import Teacher
from yolocomp.engine.hyp import hyp
from yolocomp.engine.train_cli import distill_callback, parser
from yolocomp.engine.trainer import train
from yolocomp.errors import InputError
from yolocomp.models import Darknet
from yolocomp.models.checkpoint import save_checkpoint

H = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)


@pytest.fixture(scope="module")
def data():
    return synthetic.embedded("smoke")


def _snapshot(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind, options", [("KDstr5", {}), ("hint", {"feature_pairs": [(2, 2), (4, 4)]})])
def test_teacher_is_bit_identical_after_a_run(kind, options, data, tmp_path):
    torch.manual_seed(0)
    teacher, student = Darknet.from_cfg(tiny_cfg(width=8)), Darknet.from_cfg(tiny_cfg(width=4))
    before, s0 = _snapshot(teacher), _snapshot(student)
    cb = make(kind, teacher, **options)
    hints0 = {}
    if kind == "hint":
        start = cb.on_train_start

        def snap(state):
            start(state)
            hints0.update(_snapshot(cb.hints))
            assert any(p is q for g in state.optimizer.param_groups[3:] for p in g["params"]
                       for q in cb.hints.parameters())
        cb.on_train_start = snap
    res = train(student, data, 1, 8, 64, tmp_path, hyp=H, callbacks=[cb], progress=False)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the teacher changed"
    assert not any(p.requires_grad for p in teacher.parameters())
    assert any(not torch.equal(s0[k], v) for k, v in res.model.state_dict().items())
    row = pd.read_csv(tmp_path / "results.csv").iloc[-1]
    assert row.kd > 0 and pd.notna(row.ap50)
    if kind == "hint":
        assert row.kd_hint > 0
        moved = [k for k, v in cb.hints.state_dict().items() if not torch.equal(hints0[k], v)]
        assert moved, "the hint layers did not train"
    else:
        assert row.kd_feat > 0
    assert not teacher.layers[2]._forward_hooks and not res.model.layers[2]._forward_hooks


def test_seed_teacher_train_mode_drifts_bn_statistics():
    teacher = Darknet.from_cfg(tiny_cfg(width=8))
    before = _snapshot(teacher)
    Teacher(teacher, mode="train")(torch.rand(4, 3, 64, 64))
    changed = [k for k, v in teacher.state_dict().items() if not torch.equal(before[k], v)]
    assert changed and all("running" in k or "num_batches" in k for k in changed)


def test_output_strategies_refuse_other_heads(data, tmp_path):
    teacher = Darknet.from_cfg(tiny_cfg(width=8).replace("anchors=10,14", "anchors=12,14"))
    with pytest.raises(InputError, match="same anchors"):
        train(Darknet.from_cfg(tiny_cfg(width=4)), data, 1, 8, 64, tmp_path, hyp=H,
              callbacks=[make("KDstr1", teacher)], progress=False)
    with pytest.raises(InputError, match="feature pairs"):
        make("hint", teacher, feature_pairs=[])


def test_cli_flags(tmp_path):
    teacher = Darknet.from_cfg(tiny_cfg(width=8))
    (tmp_path / "t.cfg").write_text(tiny_cfg(width=8))
    (tmp_path / "s.cfg").write_text(tiny_cfg(width=4))
    save_checkpoint(teacher, tmp_path / "t.pt")
    base = ["--cfg", str(tmp_path / "s.cfg"), "--data", "x.data", "--out", str(tmp_path / "o")]
    a = parser().parse_args(base + ["--t_cfg", str(tmp_path / "t.cfg"), "--t_weights", str(tmp_path / "t.pt"),
                                    "--KDstr", "4", "--kd_features", "2,4"])
    cb = distill_callback(a)
    assert cb.kind == "KDstr4" and cb.pairs == [(2, 2), (4, 4)]
    a = parser().parse_args(base + ["--t_weights", str(tmp_path / "t.pt"), "--kd_features", "4,2:1,3"])
    cb = distill_callback(a)
    assert cb.kind == "hint" and cb.pairs == [(2, 1), (4, 3)]
    assert distill_callback(parser().parse_args(base)) is None
    for bad in (["--KDstr", "2"], ["--t_weights", str(tmp_path / "t.pt"), "--kd_features", "2,x"],
                ["--t_weights", str(tmp_path / "t.pt"), "--kd_features", "2:1,3"]):
        with pytest.raises(InputError):
            distill_callback(parser().parse_args(base + bad))
    with pytest.raises(SystemExit):
        parser().parse_args(base + ["--KDstr", "6"])


@pytest.mark.slow
def test_cli_trains_with_a_teacher(data, tmp_path):
    from yolocomp.engine.train_cli import cli_train

    teacher = Darknet.from_cfg(tiny_cfg(width=8))
    save_checkpoint(teacher, tmp_path / "t.pt")
    (tmp_path / "s.cfg").write_text(tiny_cfg(width=4))
    res = cli_train(["--cfg", str(tmp_path / "s.cfg"), "--data", str(data), "--out", str(tmp_path / "o"),
                     "--img-size", "64", "--batch-size", "8", "--epochs", "1", "--quiet",
                     "--hyp-set", "warmup_iters=2", "conf_thres=0.1", "--t_weights", str(tmp_path / "t.pt"),
                     "--KDstr", "2"])
    assert "reg_ratio" in res.history.columns
    assert res.history.kd.iloc[-1] > 0
