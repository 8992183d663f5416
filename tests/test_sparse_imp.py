"""Iterative magnitude pruning: exact counts (global ratio r zeroes round(r·N), local per tensor), deterministic
ties, masks only grow, the three rewinding modes and the snapshot that feeds them (pruning-spec §12, §19 fact 18)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import train
from yolocomp.errors import InputError
from yolocomp.models import Darknet
from yolocomp.registry import PRUNERS
from yolocomp.sparse import imp
from yolocomp.sparse import masks as M


def _model(seed: int = 0, ties: bool = False) -> Darknet:
    torch.manual_seed(seed)
    model = Darknet.from_cfg(tiny_cfg())
    if ties:   # only 7 distinct magnitudes: almost every threshold falls inside a block of ties
        with torch.no_grad():
            for m in M.prunable(model).values():
                m.weight.copy_(torch.randint(-3, 4, m.weight.shape).float())
    return model


def _reference(weights: list[torch.Tensor], keep: list[torch.Tensor], n_new: int) -> list[torch.Tensor]:
    """Brute force: order (dead first, then |w|, then position) and cut."""
    flat = [(0 if not k else 1, abs(float(w)), i) for i, (w, k) in
            enumerate(zip(torch.cat([x.detach().flatten() for x in weights]), torch.cat([x.flatten() for x in keep])))]
    dead = sum(1 for f in flat if f[0] == 0)
    cut = {i for _, _, i in sorted(flat)[: dead + n_new]}
    out, pos = [], 0
    for w in weights:
        out.append(torch.tensor([pos + j not in cut for j in range(w.numel())]).view_as(w))
        pos += w.numel()
    return out


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.37, 0.5, 0.9])
def test_global_ratio_zeroes_exactly_round_r_n(ratio, ties):
    model = _model(ties=ties)
    n = sum(m.weight.numel() for m in M.prunable(model).values())
    masks = imp.prune(model, ratio, "global")
    kept, total = M.counts(masks)
    assert total == n and total - kept == round(ratio * n)
    zeros = sum(int((m.weight == 0).sum()) for m in M.prunable(model).values())
    assert zeros == round(ratio * n) or ties   # with integer weights some kept ones are 0 themselves


def test_ties_are_broken_by_position_deterministically():
    a, b = _model(ties=True), _model(ties=True)
    ws = [m.weight.detach().clone() for m in M.prunable(a).values()]
    ma, mb = imp.prune(a, 0.43, "global"), imp.prune(b, 0.43, "global")
    for x, y in zip(ma.values(), mb.values()):
        assert torch.equal(x, y)
    ref = _reference(ws, [torch.ones_like(w, dtype=torch.bool) for w in ws], round(0.43 * sum(w.numel() for w in ws)))
    for got, want in zip(ma.values(), ref):
        assert torch.equal(got, want)


def test_local_prunes_each_tensor_by_its_own_count():
    model = _model(ties=True)
    masks = imp.prune(model, 0.3, "local")
    for name, mask in masks.items():
        n = mask.numel()
        assert n - int(mask.sum()) == round(0.3 * n), name
        w = model.get_submodule(name).weight
        ref = _reference([w], [torch.ones_like(w, dtype=torch.bool)], round(0.3 * n))[0]
        assert torch.equal(mask, ref), name


@pytest.mark.parametrize("scope", ["local", "global"])
def test_second_event_prunes_rate_of_the_alive_and_keeps_the_dead(scope):
    model = _model(seed=3)
    first = imp.prune(model, 0.2, scope)
    with torch.no_grad():   # as after rewinding: masked weights hold values again, yet must stay pruned
        for name in first:
            model.get_submodule(name).weight.add_(5.0)
    second = imp.prune(model, 0.2, scope)
    for name in first:
        assert not bool((second[name] & ~first[name]).any()), name
    if scope == "global":
        alive = M.counts(first)[0]
        assert M.counts(first)[0] - M.counts(second)[0] == round(0.2 * alive)
    else:
        for name in first:
            alive = int(first[name].sum())
            assert alive - int(second[name].sum()) == round(0.2 * alive)
    # after 12 events of 20 % the seed's 0.8^12 ≈ 6.87 % remain (up to rounding)
    for _ in range(10):
        imp.prune(model, 0.2, scope)
    kept, total = M.counts(M.masks_of(model))
    assert kept / total == pytest.approx(imp.remaining_after(12, 0.2), abs=2e-3)


def test_bad_scope_and_rate():
    with pytest.raises(InputError, match="scope"):
        imp.prune(_model(), 0.2, "layer")
    with pytest.raises(InputError, match="rate"):
        imp.prune(_model(), 1.0, "global")


def test_registered_as_unstructured_pruners():
    assert PRUNERS.names(kind="unstructured", family="lth") == ["lth-local", "lth-global"]
    assert [PRUNERS.entry(n).meta["method"] for n in ("lth-local", "lth-global")] == ["LTH local", "LTH global"]
    model = _model()
    masks = PRUNERS.get("lth-global")(model, 0.5)
    assert M.counts(masks)[0] == M.counts(masks)[1] - round(0.5 * M.counts(masks)[1])


def _recorder(seen: list):
    """A stand-in for train(): records the weights it was handed and returns the model untouched."""
    def fn(model, callbacks, round_index):
        assert any(isinstance(c, M.MaskCallback) for c in callbacks)
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return SimpleNamespace(model=model, ema_model=None, metrics={"ap50": 0.0})
    return fn


@pytest.mark.parametrize("rewind", ["early", "none"])
def test_rounds_rewind_to_the_early_state_or_continue(rewind):
    trained, theta = _model(seed=1), _model(seed=2).state_dict()
    seen = []
    rounds = imp.iterative_magnitude_pruning(trained, _recorder(seen), rounds=2, rate=0.5, scope="global",
                                             rewind=rewind, rewind_state=theta if rewind == "early" else None)
    assert [r.kept for r in rounds] == [3276, 1638]      # 6552 prunable weights, halved twice
    for state, r in zip(seen, rounds):
        for name, mask in r.masks.items():
            w = state[f"{name}.weight"]
            source = theta[f"{name}.weight"] if rewind == "early" else trained.state_dict()[f"{name}.weight"]
            assert torch.equal(w[mask], source[mask]), name      # survivors restart from θ_k (or keep going)
            assert bool((w[~mask] == 0).all()), name
        assert torch.equal(state["layers.0.bn.running_mean"],
                           (theta if rewind == "early" else trained.state_dict())["layers.0.bn.running_mean"])


def test_seed_rewinding_needs_a_state():
    with pytest.raises(InputError, match="rewind state"):
        imp.imp_round(_model(), 0.2, "local", "seed", None, _recorder([]), 1)


@pytest.mark.slow
def test_snapshot_takes_the_state_after_k_epochs_and_can_stop(tmp_path):
    torch.set_num_threads(2)
    h = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)
    data = synthetic.embedded("smoke")
    start = _model(seed=4)
    init = {k: v.clone() for k, v in start.state_dict().items()}
    first, stop = imp.Snapshot(0), imp.Snapshot(1, stop=True)
    res = train(start, data, 3, 8, 64, tmp_path, hyp=h, callbacks=[first, stop], eval_every=0, progress=False)
    assert len(res.history) == 1          # stopped after the epoch it copied
    for k, v in init.items():
        assert torch.equal(first.state[k], v), k
    for k, v in res.model.state_dict().items():
        assert torch.equal(stop.state[k], v), k
