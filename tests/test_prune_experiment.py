"""The pruning notebooks' pipeline (yolocomp.prune.experiment): narrowed models, cases, cached sparsity and pruning
runs on the smoke dataset, the table's columns and the interleaved latency measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn
from yolocomp import baselines
from yolocomp.bench.cost import count_params, macs_conv
from yolocomp.errors import InputError
from yolocomp.models import Darknet, zoo
from yolocomp.models.layers_darknet import ConvLayer
from yolocomp.models.parse import read_cfg
from yolocomp.prune import experiment as ex
from yolocomp.prune.eagleeye import MacsCounter
from yolocomp.prune.graph import analyze
from yolocomp.prune.layers import block_candidates
from yolocomp.registry import PRUNERS

LATENCY = {"threads": 1, "warmup": 1, "iters": 2, "rounds": 1}


def _randomise_bn(model: Darknet, seed: int = 0) -> Darknet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer, ConvLayer) and layer.bn is not None:
                c = layer.out_channels
                layer.bn.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.01)
                layer.bn.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return model.eval()


def test_narrow_cfg_divides_bn_convs_and_keeps_heads():
    full = read_cfg(zoo.cfg_path("yolov3"))[1:]
    narrow = Darknet.from_cfg(ex.narrow_cfg("yolov3", 6, 8))
    assert len(narrow.layers) == len(full) == 107
    for s, layer in zip(full, narrow.layers):
        if s.type == "convolutional":
            bn = s.options.get("batch_normalize") == "1"
            assert layer.out_channels == (int(s.options["filters"]) // 8 if bn else 3 * (6 + 5))
    assert len(block_candidates(narrow)) == 23                 # the residual blocks layer pruning removes
    assert 0.9e6 < count_params(narrow) < 1.1e6
    assert ex.narrow_cfg("yolov3-tiny", 6, 1) == zoo.build("yolov3-tiny", 6).to_cfg()
    with pytest.raises(InputError):
        ex.narrow_cfg("yolov3", 6, 0)


def test_cases_and_settings():
    cs = ex.cases({"normal": [0.5], "regular": [0.5], "slim": [0.7], "layer": [4], "layer-channel": [[0.6, 8]]},
                  layer_keep=0.01, multiple=8)
    assert [c.method for c in cs] == ["normal", "regular", "slim", "layer", "layer-channel"]
    assert [c.setting() for c in cs] == ["0.5", "0.5 x8", "0.7 keep 0.01", "4 blocks", "0.6 keep 0.01, 8 blocks"]
    assert cs[0].options == () and cs[1].option("multiple") == 8
    ee = ex.Case.of("eagleeye", 0.5, candidates=4, pool="slim")
    assert ee.setting() == "0.5 of MACs, slim, 4 candidates"
    assert ex.Case.of("slim", 0.5, layer_keep=0.1).key() == {"method": "slim", "percent": 0.5,
                                                             "options": {"layer_keep": 0.1}}
    for bad in (lambda: ex.Case.of("magic", 0.5), lambda: ex.Case.of("slim", 1.0),
                lambda: ex.Case.of("layer"), lambda: ex.Case.of("normal")):
        with pytest.raises(InputError):
            bad()


@pytest.mark.parametrize("method", PRUNERS.names(kind="channel") + ["layer", "layer-channel"])
def test_prune_gives_masked_and_smaller_compact(method):
    cfg = ex.narrow_cfg("yolov3", 3, 16)
    model = _randomise_bn(Darknet.from_cfg(cfg))
    case = ex.Case.of(method, None if method == "layer" else 0.15, blocks=4) if method.startswith("layer") \
        else ex.Case.of(method, 0.15)
    p = ex.prune(None, case, model)
    assert [tuple(t.shape) for t in p.masked.state_dict().values()] == \
        [tuple(t.shape) for t in model.state_dict().values()]
    assert count_params(p.compact) < count_params(model)
    assert p.info["layers"] == len(p.compact.layers)
    assert len(p.info["blocks"]) == (4 if method.startswith("layer") else 0)
    with torch.no_grad():
        for i, keep in p.masks.items():
            assert bool((p.masked.layers[i].bn.weight[~keep] == 0).all())
        for t in p.blocks:
            assert bool((p.masked.layers[t].bn.weight == 0).all())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        p.compact(x)


def test_latencies_interleave_rounds_and_time_every_model(monkeypatch):
    calls = []

    def fake(model, img_size, batch, threads, warmup, iters):
        calls.append(model.tag)
        return {"latency_ms": float(model.tag * 10 + len(calls)), "device_name": "cpu-x", "threads": threads}

    monkeypatch.setattr(ex, "measure_latency", fake)
    a, b = nn.Identity(), nn.Identity()
    a.tag, b.tag = 1, 2
    out = ex.latencies({"a": a, "b": b}, 64, threads=1, iters=2, rounds=3)
    assert calls == [1, 2, 1, 2, 1, 2]                 # a round times every model before the next round
    assert out["a"]["latency_ms"] == 13.0 and out["b"]["latency_ms"] == 24.0     # medians of (11,13,15), (22,24,26)
    assert out["a"]["threads"] == 1 and out["a"]["device_name"] == "cpu-x"
    with pytest.raises(InputError):
        ex.latencies({"a": a}, 64, rounds=0)


def test_real_latency_of_a_smaller_model_is_lower():
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1))
    small = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    out = ex.latencies({"big": big, "small": small}, 96, threads=1, warmup=1, iters=5, rounds=2)
    assert out["big"]["latency_ms"] > out["small"]["latency_ms"] > 0


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A yolov3-tiny at 1/4 width (small checkpoints) trained for one epoch on the smoke set at 64 px,
    sparsity-trained for one more, and the cases normal 0.3 and slim 0.5 fine-tuned for one epoch, in a private
    cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("YOLOCOMP_CACHE", str(tmp_path_factory.mktemp("cache")))
    data = baselines.data_file("embedded", "smoke")
    recipe = baselines.recipes(["yolov3-tiny"], [0], data, 1, 4, 64, "default", {"warmup_iters": 1, "accumulate": 1},
                               "cpu")[0]
    base = ex.Source(recipe, 4)
    sparse = ex.Source(recipe, 4, ex.Sparsity(1, 0.01))
    cases = [(sparse, ex.Case.of("normal", 0.3)), (sparse, ex.Case.of("slim", 0.5, layer_keep=0.01))]
    table = ex.pruning_table(cases, ex.Finetune(1), "embedded-smoke", LATENCY)
    yield SimpleNamespace(base=base, sparse=sparse, cases=cases, table=table)
    mp.undo()


@pytest.mark.slow
def test_pipeline_table_columns_and_values(pipeline):
    table = pipeline.table
    assert list(table["method"]) == ["normal", "slim"] and list(table["setting"]) == ["0.3", "0.5 keep 0.01"]
    for col in ("ap50_masked", "ap50_pruned", "ap50_finetuned", "ap50", "params_ratio", "speedup", "latency_ms"):
        assert table[col].notna().all(), col
    assert (table["ap50"] == table["ap50_finetuned"]).all()
    assert (table["params_ratio"] < 1).all() and (table["macs_ratio"] < 1).all()
    full = pipeline.base.model()
    assert table["params_ratio"].iloc[1] == pytest.approx(table["params"].iloc[1] / count_params(full))
    assert table["macs_ratio"].iloc[1] == pytest.approx(table["macs_conv"].iloc[1] / macs_conv(full, 64))
    assert (table["speedup"] == table["baseline_latency_ms"] / table["latency_ms"]).all()
    assert (table["finetune_epochs"] == 1).all() and (table["threads"] == 1).all()
    assert (table["width"] == 0.25).all()
    assert (table["sparsity"] == "s=0.01, 1 epochs, set 1, constant").all()


@pytest.mark.slow
def test_pipeline_artefacts_and_sparsity_history(pipeline):
    hist = ex.sparsity_history(pipeline.sparse)
    assert [h["epoch"] for h in hist] == [-1, 0] and hist[0]["s"] == 0.0 and hist[1]["s"] == 0.01
    assert hist[1]["mean"] < hist[0]["mean"]                   # the L1 pulled γ down
    folder = ex.pruned_run(*pipeline.cases[1], ex.Finetune(1))          # cached: returns at once
    for name in ("masked.json", "pruned.json", "info.json", "pruned.cfg", "pruned.weights", "pruned.pt",
                 "finetune/last.pt"):
        assert (folder / name).is_file(), name
    info = json.loads((folder / "info.json").read_text())
    assert info["channels_kept"] and info["blocks"] == []
    assert ex.final_model(folder).to_cfg() == Darknet.from_cfg(folder / "pruned.cfg").to_cfg()
    src = ex.source_table([pipeline.base, pipeline.sparse], "embedded-smoke")
    assert list(src["method"]) == ["baseline", "sparsity"]
    assert src["gamma_p50"].iloc[1] < src["gamma_p50"].iloc[0]


@pytest.mark.slow
def test_pipeline_rerun_reuses_everything(pipeline, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("a cached run trained again")

    monkeypatch.setattr("yolocomp.engine.trainer.train", no_training)
    again = ex.pruning_table(pipeline.cases, ex.Finetune(1), "embedded-smoke", LATENCY)
    timing = ["latency_ms", "speedup", "baseline_latency_ms"]
    pd.testing.assert_frame_equal(again.drop(columns=timing), pipeline.table.drop(columns=timing))


@pytest.mark.slow
def test_matched_percent_hits_the_macs_ratio(pipeline):
    sparse = pipeline.sparse
    model = sparse.model()
    counter = MacsCounter(model, 64)
    p = ex.matched_percent(sparse, "slim", 0.6, layer_keep=0.01)
    got = counter(PRUNERS.get("slim")(model, analyze(model), p, layer_keep=0.01)) / counter.full
    assert abs(got - 0.6) < 0.05


def test_infeasible_case_is_skipped_with_a_warning(monkeypatch):
    def refuse(src, case, finetune, progress=False):
        raise ValueError("percent 0.99 would remove every channel")

    monkeypatch.setattr(ex, "pruned_run", refuse)
    with pytest.warns(UserWarning, match="skipped normal 0.99"):
        out = ex.pruning_table([(None, ex.Case.of("normal", 0.99))], ex.Finetune(1), "x")
    assert out.empty


@pytest.mark.slow
def test_importing_the_pipeline_alone_knows_the_channel_pruners():
    code = "from yolocomp.prune import experiment; print(experiment.Case.of('slim', 0.5).setting())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.5 keep 0.01"
