"""Token-level statistics from one forward pass per batch: everything the MIA panel needs.

Pure ML code (torch), no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unlearning.lm import batched_logits


@dataclass(frozen=True)
class TokenStatistics:
    """Per predicted token of one text: log p(x_t), and the mean μ_t and standard deviation σ_t of
    log p under the model's next-token distribution at that position (σ² clamped ≥ 1e-6)."""

    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


@torch.no_grad()
def token_statistics(model, tokenizer, texts: Sequence[str]) -> list[TokenStatistics]:
    results: list[TokenStatistics] = []
    for batch, logits in batched_logits(model, tokenizer, texts):
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        targets = batch["input_ids"][:, 1:]
        target_logprobs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        probs = log_probs.exp()
        mu = (probs * log_probs).sum(-1)
        variance = ((probs * log_probs.square()).sum(-1) - mu.square()).clamp_min(1e-6)
        lengths = batch["attention_mask"].sum(1) - 1  # predicted tokens per text
        for row, length in enumerate(lengths.tolist()):
            results.append(TokenStatistics(
                logprobs=target_logprobs[row, :length].numpy(),
                mu=mu[row, :length].numpy(),
                sigma=variance[row, :length].sqrt().numpy(),
            ))
    return results
