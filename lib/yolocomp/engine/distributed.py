"""Data-parallel training with ``torchrun`` (ecosystem §4.1).

Single node, N processes (one per GPU, or N CPU processes with gloo)::

    torchrun --standalone --nproc_per_node N -m yolocomp train --cfg ... --data ... --batch-size B

Multi-node (run on every node, node_rank 0..nnodes-1; MASTER is reachable from all nodes)::

    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --master_addr MASTER --master_port 29500 \\
        -m yolocomp train ...

The trainer detects torchrun from ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``, uses ``cuda:LOCAL_RANK`` with nccl (gloo
on CPU), a :class:`~torch.utils.data.DistributedSampler` whose ``set_epoch`` reshuffles every epoch from
(seed, epoch), and wraps the model in DDP.  Only rank 0 logs and writes files.

Batch sizes: ``--batch-size`` is the **per-rank** batch; the global batch is ``batch_size × world_size``.
Accumulation targets the nominal batch 64 with the global batch: ``accumulate = max(1, round(64 / (bs·W)))``, and
each rank's loss is multiplied by ``bs·W/64`` (DDP averages gradients over ranks, so the step equals one process
with batch bs·W).  With the DistributedSampler, rank r's k-th batch holds ``perm[r::W][k·bs:(k+1)·bs]``, so the W
ranks together see exactly the images of the single-process batch of size bs·W: a run on W ranks matches a
1-process run with the global batch, up to the per-rank means of the loss (box and class terms average over each
rank's positives) and BN batch statistics (per rank unless ``--sync-bn``, which needs CUDA).

Evaluation: each rank predicts its shard (images ``rank::W``), predictions are gathered with
``all_gather_object`` and rank 0 scores them once with :func:`yolocomp.eval.evaluate_predictions`.

From a notebook (one process, cannot host DDP), :func:`launch_torchrun` starts torchrun as a subprocess; read the
run's ``results.csv`` and ``last.pt`` afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.canonical import DetectionSet


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (0, 1, 0 when not under torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | torch.device = "cpu") -> tuple[DistInfo, torch.device]:
    """Read the torchrun environment, initialise the process group if needed, return (info, this rank's device).

    Under torchrun with a CUDA ``device`` the rank uses ``cuda:LOCAL_RANK`` and nccl; on CPU, gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), torch.device(device)
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool = False,
         find_unused_parameters: bool = False) -> nn.Module:
    """DDP-wrap ``model`` (already on ``device``) when distributed; optionally convert BN to SyncBatchNorm.

    ``find_unused_parameters`` is needed when some layers are skipped in some iterations (TAN#43).
    """
    if not info.enabled:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn needs CUDA: torch's SyncBatchNorm has no CPU implementation")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def shard(ds: DetectionSet, info: DistInfo) -> DetectionSet:
    """The images ``rank::world_size`` of ``ds`` (the whole set when not distributed)."""
    return ds if not info.enabled else dataclasses.replace(ds, images=ds.images[info.rank::info.world_size])


def gather(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` when not distributed)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise mean of ``values`` over ranks."""
    if not info.enabled:
        return values
    v = values.clone()
    dist.all_reduce(v)
    return v / info.world_size


def launch_torchrun(nproc: int, args: list[str], env: dict | None = None, timeout: float | None = None,
                    cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ``torchrun --standalone --nproc_per_node nproc -m yolocomp *args`` and wait; output captured as text.

    ``args`` start with the sub-command (``["train", "--cfg", ...]``).  Raises nothing on failure: check
    ``.returncode`` and ``.stderr``.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
           "-m", "yolocomp", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False,
                          env={**os.environ, **(env or {})})
