"""The published-figures table against the seed README text it was typed from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from yolocomp.reference import published

SEEDS = Path("/work/shared/seeds")
FILES = {"SPURS": "000_6b059ec5ad982426.txt", "HALO": "002_bd3f0b5c69dd93d7.txt", "GUMP": "003_4d82b48ab83c9f0e.txt",
         "ANDREY": "004_ffd06f0fe2d7895d.txt"}


def test_filters_and_columns():
    df = published()
    assert list(df.columns) == ["seed", "table", "row", "column", "value", "number", "unit", "quantity", "dataset",
                                "model", "method", "setting", "source"]
    assert set(df.seed) == set(FILES)
    voc = published("ANDREY", "voc2007")
    assert len(voc) == 14 * 4 and set(voc.table) == {"voc2007"}
    with pytest.raises(KeyError, match="known: ANDREY"):
        published("NOPE")


@pytest.mark.parametrize("seed,table,model,method,column,value,number", [
    ("ANDREY", "voc2007", "YOLOv3", "Default", "MACs", "32,\u2006829,\u2006119,\u2006167", 32_829_119_167),
    ("ANDREY", "voc2007", "YOLOv3", "CS 3 It", "Storage (MB)", "5.544\u2005±\u20050.07", 5.544),
    ("ANDREY", "exdark", "YOLO Nano", "Default", "Final Params", "2,\u2006872,\u2006743", 2_872_743),
    ("SPURS", "multi-backbone", "YOLOv4", "", "GFLOPS", "107.1", 107.1),
    ("SPURS", "multi-backbone", "YOLOv3", "", "speed(inference/NMS/total) [NMS]", "1.7", 1.7),
    ("HALO", "attention-yolov3-tiny", "YOLOv3-tiny + SE", "", "Params", "8.933", 8.933),
    ("GUMP", "slighter-models", "YOLOv5l-MobileNetv3Small", "", "GFLOPs", "38.4", 38.4),
])
def test_spot_checks(seed, table, model, method, column, value, number):
    df = published(seed, table)
    hit = df[(df.model == model) & (df.method == method) & (df.column == column)]
    assert list(hit.value)[:1] == [value]
    assert hit.number.iloc[0] == number


def test_spurs_units_and_kd_columns():
    kd = published("SPURS", "distillation")
    row608 = kd[kd.setting == "teacher yolov3tiny608"]
    assert len(row608) == 1 + 10                       # teacher mAP + ten student columns (KDstr 7 empty)
    assert row608[row608.method == "KDstr 6(L2)"].value.tolist() == ["0.660"]
    mb = published("SPURS", "multi-backbone")
    assert set(mb[mb.quantity == "params"].unit) == {"M"}


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seed READMEs are not at {SEEDS}")
def test_every_value_occurs_in_its_seed_file_table():
    df = published()
    texts = {s: (SEEDS / f).read_text(encoding="utf-8").splitlines() for s, f in FILES.items()}
    for r in df.itertuples():
        line = int(re.search(r": line (\d+)", r.source).group(1))
        assert r.source.startswith(FILES[r.seed])
        lines = texts[r.seed]
        table = []
        for text in lines[line - 1:]:
            if not text.startswith("|"):
                break
            table.append(text)
        assert r.value in table[1 + r.row], (r.seed, r.table, r.row, r.value)


def test_method_key_spells_published_and_ours_alike():
    from yolocomp.overview import method_key

    assert method_key("KDstr 3") == method_key("KDstr3") == "KDstr3"
    spurs = ("SPURS", "distillation")                  # printed with the Era-A numbering
    assert method_key("KDstr 5(L1)", spurs) == "KDstr4" and method_key("KDstr 6(L1)", spurs) == "KDstr5"
    assert method_key("KDstr 4(L1)", spurs) == "KDstr4 Era A" and method_key("KDstr 6(L2)", spurs) == "KDstr5 (L2)"
    assert method_key("KD fts 36, 61") == "hint" and method_key("KD GAN") == "gan"
    assert method_key("LTH  Local") == "LTH local"
    assert method_key("CS 3 It") == "CS 3 iterations"
    assert method_key("直接微调") == "finetune"
    assert method_key("Default") == "baseline"
    assert method_key("something new") == "something new"


def test_experiments_sets_our_rows_beside_the_published_rows_of_the_same_experiment():
    import pandas as pd
    from yolocomp import overview

    ours = {"03_pruning/lth": pd.DataFrame({"model": ["yolov3-tiny"] * 2, "dataset": ["embedded-small"] * 2,
                                            "method": ["LTH local", "LTH global"], "setting": ["0.8", "0.8"],
                                            "ap50": ["0.4", "0.5"], "ap50_std": ["0.01", "0.02"]})}
    long = overview.experiments(ours)
    assert set(long["source"]) == {"ours", "published"}
    pub = long[(long["source"] == "published") & (long["experiment"] == "03_pruning/lth")]
    assert set(pub["method"]) == {"baseline", "LTH local", "LTH global"}    # CS and KD rows filtered out
    assert not long.duplicated(overview.EXPERIMENT_KEYS).any()
    view = overview.experiment_view(long, "03_pruning/lth").set_index("method")
    assert view.loc["LTH local", "ours"].startswith("yolov3-tiny 0.8 0.400 ± 0.010")
    assert "0.549" in view.loc["LTH local", "published"] and "ANDREY voc2007" in view.loc["LTH local", "published"]
    assert view.loc["baseline yolov3-tiny", "ours"] == ""
    kd = long[long["experiment"] == "05_distill/kd_strategies"]          # not run: published rows only
    assert set(kd["source"]) == {"published"} and {"finetune", "teacher", "KDstr5"} <= set(kd["method"])
