"""``python -m yolocomp prune`` and the sparsity flags of ``python -m yolocomp train``, run in-process on a tiny
random yolov3-tiny (6 classes)."""

from __future__ import annotations

import pytest
import torch
from yolocomp.__main__ import main
from yolocomp.bench.cost import count_params
from yolocomp.engine.train_cli import parser as train_parser
from yolocomp.engine.train_cli import sparsity_callback
from yolocomp.models import Darknet, load_checkpoint, load_darknet_weights, save_darknet_weights, zoo
from yolocomp.prune import select
from yolocomp.prune.cli import cli_prune
from yolocomp.prune.graph import analyze
from yolocomp.prune.sparsity import BNSparsity


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """cfg + .weights of yolov3-tiny with 6 classes and distinct random BN γ (a stand-in for a sparse model)."""
    d = tmp_path_factory.mktemp("tiny")
    model = zoo.build("yolov3-tiny", 6)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.99 + 0.01)
    cfg, weights = d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights"
    cfg.write_text(model.to_cfg())
    save_darknet_weights(model, weights)
    return cfg, weights


def _load(cfg, weights) -> Darknet:
    model = Darknet.from_cfg(cfg)
    load_darknet_weights(model, weights)
    return model.eval()


@pytest.mark.parametrize("method, extra, stem", [
    ("slim", ["--percent", "0.5"], "prune_slim_0.5_keep_0.01_yolov3-tiny"),
    ("normal", ["--percent", "0.3"], "prune_normal_0.3_yolov3-tiny"),
])
def test_prune_writes_loadable_smaller_model(tiny, tmp_path, capsys, method, extra, stem):
    cfg, weights = tiny
    out = tmp_path / "out"
    rc = cli_prune(["--method", method, "--cfg", str(cfg), "--weights", str(weights), "--out", str(out),
                    "--no-eval", "--img-size", "64", *extra])
    assert rc == 0
    for ext in ("cfg", "weights", "pt"):
        assert (out / f"{stem}.{ext}").is_file(), f"{stem}.{ext} missing"
    original = _load(cfg, weights)
    pruned = _load(out / f"{stem}.cfg", out / f"{stem}.weights")
    assert count_params(pruned) < count_params(original)
    # the written widths are exactly the library's masks
    graph = analyze(original)
    percent = float(extra[1])
    masks = select.slim(original, graph, percent) if method == "slim" else select.normal(original, graph, percent)
    assert sum(int((~m).sum()) for m in masks.values()) > 0
    for i, m in masks.items():
        assert pruned.layers[i].out_channels == int(m.sum()), f"layer {i}"
    # .pt checkpoint and cfg + .weights are the same model
    from_pt, meta = load_checkpoint(out / f"{stem}.pt")
    assert meta["method"] == method and meta["percent"] == percent
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(pruned(x), from_pt(x))
    text = capsys.readouterr().out
    assert f"{count_params(pruned):,}" in text and f"{count_params(original):,}" in text


def test_bad_percent_and_method_exit_nonzero_with_message(tiny, tmp_path, capsys):
    cfg, weights = tiny
    base = ["prune", "--cfg", str(cfg), "--weights", str(weights), "--out", str(tmp_path), "--no-eval"]
    with pytest.raises(SystemExit) as e:
        main([*base, "--method", "slim", "--percent", "1.5"])
    assert e.value.code == 2
    assert "must be in [0, 1), got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*base, "--method", "bogus", "--percent", "0.5"])
    assert e.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    # in range, but the global threshold empties a layer: an InputError message, not a traceback
    assert main([*base, "--method", "normal", "--percent", "0.99"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "would remove every channel" in err and "Traceback" not in err
    # yolov3-tiny has no residual block to remove
    assert main([*base, "--method", "layer", "--shortcuts", "2"]) == 1
    assert "removable residual blocks" in capsys.readouterr().err
    assert not list(tmp_path.glob("prune_*"))


def test_train_sparsity_flags_build_bnsparsity(tiny, tmp_path):
    cfg, _ = tiny
    base = ["--cfg", str(cfg), "--data", str(tmp_path / "x.data"), "--out", str(tmp_path)]
    a = train_parser().parse_args([*base, "-sr", "--s", "0.001", "--prune", "1"])
    cb = sparsity_callback(a)
    graph = analyze(Darknet.from_cfg(cfg))
    assert isinstance(cb, BNSparsity)
    assert (cb.s, cb.mode, cb.schedule) == (0.001, 1, "constant")
    assert cb.layers == graph.prunable == [0, 2, 4, 6, 8, 10, 12, 13, 14, 21]
    a0 = train_parser().parse_args([*base, "--sr", "--s", "0.01", "--prune", "0", "--s-schedule", "global"])
    cb0 = sparsity_callback(a0)
    assert (cb0.s, cb0.mode, cb0.schedule) == (0.01, 0, "global")
    assert cb0.layers == select.normal_pool(graph)
    assert sparsity_callback(train_parser().parse_args(base)) is None
    with pytest.raises(SystemExit):
        train_parser().parse_args([*base, "-sr", "--prune", "3"])
