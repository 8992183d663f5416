"""Data-parallel training: 2 gloo processes under torchrun on CPU against 1 process with the same global batch.

Tolerance: the ranks together see exactly the single-process batches (DistributedSampler interleaving), and the
loss × world size makes DDP's gradient average equal the global-batch gradient for the objectness term; the box and
class terms are means over each rank's positives, so gradients differ slightly.  The test cfg has no BatchNorm
(SyncBatchNorm is CUDA-only), so BN batch statistics cannot differ.  Stated tolerance after one epoch (3 optimizer
steps), all tensors taken together: ||w_ddp − w_1|| ≤ 1 % of ||w_1 − w_init|| (measured 0.2 %) and
max |w_ddp − w_1| ≤ 0.03 (measured 0.0105).
"""

from __future__ import annotations

import pandas as pd
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine.distributed import launch_torchrun
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import train
from yolocomp.models import Darknet
from yolocomp.seed import set_all

SET = {"lr0": 0.02, "warmup_iters": 2, "warmup_epochs": 0.5, "conf_thres": 0.1, "nominal_batch": 8}


def test_two_gloo_ranks_match_one_process(tmp_path):
    torch.set_num_threads(2)
    data = synthetic.embedded("smoke")
    cfg = tmp_path / "tiny-nobn.cfg"
    cfg.write_text(tiny_cfg(bn=False))
    args = ["train", "--cfg", cfg, "--data", data, "--img-size", 64, "--epochs", 1, "--batch-size", 4,
            "--out", tmp_path / "ddp", "--quiet", "--hyp-set", *[f"{k}={v}" for k, v in SET.items()]]
    proc = launch_torchrun(2, args, env={"OMP_NUM_THREADS": "1"}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done:" in proc.stdout and proc.stdout.count("done:") == 1          # rank 0 alone reports

    one = train(str(cfg), data, 1, 8, 64, tmp_path / "one", hyp=hyp("default", **SET), progress=False)
    ck = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert ck["ni"] == 3 and ck["metadata"]["args"]["world_size"] == 2
    set_all(0)
    init = Darknet.from_cfg(str(cfg)).state_dict()
    w1 = torch.cat([v.flatten() for v in one.model.state_dict().values()])
    wd = torch.cat([ck["raw_model"][k].flatten() for k in one.model.state_dict()])
    w0 = torch.cat([init[k].flatten() for k in one.model.state_dict()])
    moved = (w1 - w0).norm()
    assert moved > 0
    assert (wd - w1).norm() <= 0.01 * moved, ((wd - w1).norm(), moved)
    assert (wd - w1).abs().max() <= 0.03, ((wd - w1).abs().max(), (wd - w1).norm() / moved)
    # evaluation gathered from both ranks covers every validation image once
    row = pd.read_csv(tmp_path / "ddp" / "results.csv").iloc[0]
    assert 0.0 <= row.ap50 <= 1.0
    assert ck["metrics"]["images"] == 12
