"""GPU placement: which GPUs a launched model's worker sees (`CUDA_VISIBLE_DEVICES`), from
Xinference's launch parameters `gpu_idx` and `n_gpu`. Counts GPUs without importing anything heavy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def gpu_count() -> int:
    """The NVIDIA GPUs this server may place models on: `MODELYARD_GPU_COUNT`, else those the driver lists
    (within the server's own `CUDA_VISIBLE_DEVICES`, where set)."""
    given = os.environ.get("MODELYARD_GPU_COUNT")
    if given:
        return int(given)
    found = len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        found = min(found, len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"]))
    return found


def placement(gpu_idx: Any, n_gpu: Any) -> dict[str, str]:
    """The worker's environment for this placement: {} (the worker sees what the server sees), or
    `CUDA_VISIBLE_DEVICES`. A placement this machine cannot give is a 400 that says what it has."""
    count = None
    if gpu_idx not in (None, []):
        indices = [gpu_idx] if isinstance(gpu_idx, int) and not isinstance(gpu_idx, bool) else gpu_idx
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                    for i in indices):
            raise InvalidRequest(f"gpu_idx must be a GPU index or a list of them, got {gpu_idx!r}.")
        count = gpu_count()
        missing = sorted(i for i in set(indices) if i >= count)
        if missing:
            has = f"GPUs 0 to {count - 1}" if count else "no GPU"
            raise InvalidRequest(f"gpu_idx {missing} is not a GPU of this machine, which has {has}.")
        if isinstance(n_gpu, int) and not isinstance(n_gpu, bool) and n_gpu not in (0, len(indices)):
            raise InvalidRequest(f"n_gpu {n_gpu} disagrees with gpu_idx {indices}; give one of them.")
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in indices)}
    if n_gpu in (None, "auto"):
        return {}
    if isinstance(n_gpu, bool) or not isinstance(n_gpu, int) or n_gpu < 0:
        raise InvalidRequest(f"n_gpu must be 'auto' or a whole number of GPUs, got {n_gpu!r}.")
    if n_gpu == 0:
        return {"CUDA_VISIBLE_DEVICES": ""}  # the model runs on the CPU
    count = gpu_count()
    if n_gpu > count:
        raise InvalidRequest(f"n_gpu {n_gpu} is more GPUs than this machine has ({count}).")
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(n_gpu))}
