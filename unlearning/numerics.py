"""Where and how the engines compute: the device (`UNLEARNING_DEVICE`), bf16 autocast on GPUs that
support it, deterministic kernels on CUDA, and torch's thread count.

Exact regimes promise that a model resumed from a checkpoint equals, byte for byte, one retrained
from scratch, which holds only when both ran with the same numerics. Float sums split across a
different number of threads round differently, so the thread count is recorded in a lineage and
every deletion retrains with it; on CUDA, training runs with deterministic algorithms and a fixed
cuBLAS workspace (the team's measurement on an H200 with a plain training loop, not yet with this
code: without them two identical trainings differed; with them they were identical, also resumed
from a checkpoint), and the lineage records the device, which a deletion must match. Pure ML code (torch), read from the environment because the engines never import Django.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

logger = logging.getLogger(__name__)
# cuBLAS reads this when it first starts in a process; models are loaded inside tasks, after this
# module is imported, so setting it here is in time. It only matters on CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
DEVICE_SETTING = "UNLEARNING_DEVICE"


def device() -> torch.device:
    """`UNLEARNING_DEVICE`: `auto` (the default: CUDA when present, else the CPU), `cpu`, `cuda` or
    `cuda:N`. A device this machine lacks is an error, not a silent fallback."""
    name = os.environ.get(DEVICE_SETTING, "auto").strip().lower() or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{DEVICE_SETTING}={name!r}: use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_SETTING}={name!r}, but torch sees no CUDA device on this machine")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise RuntimeError(f"{DEVICE_SETTING}={name!r}, but this machine has {torch.cuda.device_count()} CUDA devices")
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"{DEVICE_SETTING}={name!r}: use auto, cpu, cuda or cuda:N")
    return chosen


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def on_device(batch: dict, model) -> dict:
    """A collated batch, moved to where the model's weights are."""
    where = model_device(model)
    return {name: tensor.to(where) for name, tensor in batch.items()}


def autocast(where: torch.device):
    """bf16 autocast on a GPU that supports it; on the CPU, float32 as it is."""
    if where.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextmanager
def deterministic(where: torch.device) -> Iterator[None]:
    """Deterministic kernels while training on CUDA (the CPU's are already)."""
    if where.type != "cuda":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def describe_device(where: torch.device) -> str | None:
    """What a lineage records of a device other than the CPU (None on the CPU, so that CPU
    lineages keep their hash): the GPU's name, autocast and deterministic kernels."""
    if where.type != "cuda":
        return None
    precision = "bf16 autocast" if torch.cuda.is_bf16_supported() else "float32"
    return f"{torch.cuda.get_device_name(where)}, {precision}, deterministic algorithms"


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with this many torch intra-op threads (None: leave them as they are)."""
    previous = torch.get_num_threads()
    if threads:
        if threads > (os.cpu_count() or threads):
            logger.warning("training with %d torch threads on %d cores, as the lineage was trained: threads will "
                           "wait for each other (slow), but the result stays reproducible", threads, os.cpu_count())
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class PinnedNumerics:
    """What a torch learner tells the SISA engine about its numerics (unlearning.sisa.Learner)."""

    def threads(self) -> int:
        return torch.get_num_threads()

    def device_description(self) -> str | None:
        return describe_device(device())

    def pinned_threads(self, threads: int | None):
        return torch_threads(threads)
