"""The sparse file loads back to the same weights and masks; its size and the non-zero counts are honest."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.bench.cost import count_params, macs_conv
from yolocomp.errors import WeightsError
from yolocomp.models import Darknet
from yolocomp.sparse import costs, imp, storage
from yolocomp.sparse import masks as M
from yolocomp.sparse.experiment import summary_table


def _pruned(rate: float, scope: str = "local", seed: int = 0) -> Darknet:
    torch.manual_seed(seed)
    model = Darknet.from_cfg(tiny_cfg()).eval()
    with torch.no_grad():      # non-trivial BN statistics, so every tensor is checked
        for layer in model.layers:
            bn = getattr(layer, "bn", None)
            if bn is not None:
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.bias.uniform_(0.1, 1)      # no exact zeros outside the masks
    imp.prune(model, rate, scope)
    return model


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.99])
def test_sparse_file_loads_back_to_the_same_weights_and_masks(rate, tmp_path):
    model = _pruned(rate)
    size = storage.save_sparse(model, tmp_path / "m.pt")
    assert size == (tmp_path / "m.pt").stat().st_size
    back = storage.load_sparse(tmp_path / "m.pt")
    a, b = model.state_dict(), back.state_dict()
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), back(x))


def _encodings(path) -> set[str]:
    return {e["encoding"] for e in torch.load(path, weights_only=True)["sparse"].values()}


def test_both_encodings_are_used_and_the_file_shrinks(tmp_path):
    assert storage.encoding_for(10, 1000) == "index" and storage.encoding_for(500, 1000) == "bitmap"
    assert storage.encoding_for(1000, 1000) == "bitmap"     # a mask is always kept, so a dense layer still has one
    storage.save_sparse(_pruned(0.99), tmp_path / "index.pt")
    storage.save_sparse(_pruned(0.5), tmp_path / "bitmap.pt")
    assert _encodings(tmp_path / "index.pt") == {"index"} and _encodings(tmp_path / "bitmap.pt") == {"bitmap"}
    torch.manual_seed(0)
    wide = Darknet.from_cfg(tiny_cfg(width=32))      # big enough that the zip records do not dominate
    dense = storage.save_sparse(wide, tmp_path / "dense.pt")
    imp.prune(wide, 0.9, "global")
    sparse = storage.save_sparse(wide, tmp_path / "sparse.pt")
    assert sparse < 0.3 * dense


def test_truncated_or_foreign_file_is_refused(tmp_path):
    storage.save_sparse(_pruned(0.5), tmp_path / "m.pt")
    blob = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WeightsError, match="cut.pt"):
        storage.load_sparse(tmp_path / "cut.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a sparse model file"):
        storage.load_sparse(tmp_path / "other.pt")


def test_non_zero_params_and_macs():
    dense = _pruned(0.0)
    assert costs.count_nonzero(dense) == count_params(dense)
    assert costs.macs_nonzero(dense, 64) == macs_conv(dense, 64)
    model = _pruned(0.6, "local")
    masks = M.masks_of(model)
    kept, total = M.counts(masks)
    assert costs.count_nonzero(model) == count_params(model) - (total - kept)
    # per conv: output positions × its non-zero weights (tiny cfg: stride-2 convs 32, 16, 8, 4, 2 px, head 2 px)
    sizes = [32, 16, 8, 4, 2]
    want = sum(s * s * int(masks[f"layers.{i}.conv"].sum()) for i, s in enumerate(sizes))
    want += 2 * 2 * int(torch.count_nonzero(model.layers[5].conv.weight))
    assert costs.macs_nonzero(model, 64) == want
    row = costs.sparse_cost_row(model, 64)
    assert row["params"] == costs.count_nonzero(model) and row["weights_remaining"] == pytest.approx(kept / total)
    assert row["storage_mib"] < row["dense_mib"] * 1.5 and row["macs_dense"] == macs_conv(model, 64)


def test_summary_table_is_mean_and_std_over_seeds():
    base = {"model": "m", "dataset": "embedded-small", "img_size": 192, "ap": 0.1, "ap50_seedstyle": 0.2, "params_dense": 100, "macs_dense": 10, "dense_mib": 1.0,
            "macs_conv": 5, "storage_mib": 0.5}
    rows = [{**base, "method": "baseline", "stage": "dense", "round": 0, "seed": s, "ap50": 0.5 + s / 10,
             "params": 100, "weights_remaining": 1.0} for s in range(3)]
    rows += [{**base, "method": "LTH local", "stage": "ticket", "round": 1, "seed": s, "ap50": 0.4 + s / 10,
              "params": 40 + s, "weights_remaining": 0.5} for s in range(3)]
    t = summary_table(pd.DataFrame(rows))
    lth = t[t["method"] == "LTH local"].iloc[0]
    assert lth["seeds"] == 3 and lth["ap50"] == pytest.approx(0.5) and lth["ap50_std"] == pytest.approx(0.1)
    assert lth["setting"] == "round 1" and lth["params"] == 41 and lth["params_ratio"] == pytest.approx(0.41)
    assert t[t["method"] == "baseline"].iloc[0]["setting"] == ""
