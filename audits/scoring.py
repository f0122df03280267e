"""Token-level statistics from one forward pass per batch: everything the MIA panel needs.

Pure ML code (torch), no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unlearning.lm import collate, encode


@dataclass(frozen=True)
class TokenStatistics:
    """Per predicted token of one text: log p(x_t), and the mean μ_t and standard deviation σ_t of
    log p under the model's next-token distribution at that position (σ² clamped ≥ 1e-6)."""

    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


@torch.no_grad()
def token_statistics(model, tokenizer, texts: Sequence[str], batch_size: int = 64) -> list[TokenStatistics]:
    sequences = encode(tokenizer, texts, model.config.n_positions)
    results: list[TokenStatistics] = []
    for start in range(0, len(sequences), batch_size):
        batch = collate(sequences[start : start + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        log_probs = torch.log_softmax(logits, dim=-1)
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
