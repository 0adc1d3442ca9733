"""Deterministic seeding and the RNG snapshot that makes resume exact."""

from __future__ import annotations

import os
import random
import sys
from typing import Any

import numpy as np
import torch

# The loaders' seeding lives with the loaders; re-exported for code that seeds by hand.
from mmbalance.data.loading import epoch_generator, worker_init

__all__ = ["epoch_generator", "rng_state", "seed_everything", "set_rng_state", "worker_init"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (CPU and CUDA); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        _deterministic_kernels()
        torch.backends.cudnn.benchmark = False


def _deterministic_kernels() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (4 s per process on a 2-core CPU), which only sets a flag for
    ``torch.compile``, unused here. The public call is used when inductor is already loaded
    (someone compiles) or the private setter is gone in a future torch."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def rng_state() -> dict[str, Any]:
    """Every global RNG's state, as tensors / plain data (loadable with ``weights_only=True``)."""
    np_state: Any = np.random.get_state()  # the legacy tuple (key, pos, has_gauss, gauss)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npd = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npd["keys"].numpy().astype(np.uint32),
            npd["pos"],
            npd["has_gauss"],
            npd["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
