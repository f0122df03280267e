"""The numerics a training ran with, and pinning them again: exact regimes promise that a model
resumed from a checkpoint equals, byte for byte, one retrained from scratch, which holds only when
both ran with the same numerics. Float sums split across a different number of threads round
differently, so the thread count is recorded in a lineage and every deletion retrains with it.
Pure ML code (torch): learners use it; the engines that keep lineages ask their learner.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

logger = logging.getLogger(__name__)


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

    def pinned_threads(self, threads: int | None):
        return torch_threads(threads)
