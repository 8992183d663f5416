"""One call that seeds every random number generator a run touches."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_all(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed ``random``, numpy and torch (all devices); return a seeded ``torch.Generator`` for DataLoaders.

    With ``deterministic`` the cuDNN autotuner is off and torch is asked for deterministic algorithms where it
    has them (``warn_only`` so ops without one still run); CPU runs are then bit-reproducible.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: derive numpy/random seeds from torch's per-worker seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
