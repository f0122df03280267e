"""Token-level statistics from one forward pass per batch: everything the MIA panel and the
extraction audits need.

Pure ML code (torch), no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unlearning.lm import batched_logits, batched_sequence_logits, in_input_order, prompt_ids


@dataclass(frozen=True)
class TokenStatistics:
    """Per predicted token of one text: log p(x_t), and the mean μ_t and standard deviation σ_t of
    log p under the model's next-token distribution at that position (σ² clamped ≥ 1e-6)."""

    logprobs: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


def log_probabilities(batches):
    """For each (rows, batch, logits): the rows, the batch, the next-token log-probabilities and,
    per position, the log-probability of the token that actually follows."""
    for rows, batch, logits in batches:
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        targets = batch["input_ids"][:, 1:]
        yield rows, batch, log_probs, log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def token_statistics(model, tokenizer, texts: Sequence[str]) -> list[TokenStatistics]:
    def per_batch():
        for rows, batch, log_probs, target_logprobs in log_probabilities(batched_logits(model, tokenizer, texts)):
            probs = log_probs.exp()
            mu = (probs * log_probs).sum(-1)
            variance = ((probs * log_probs.square()).sum(-1) - mu.square()).clamp_min(1e-6)
            lengths = (batch["attention_mask"].sum(1) - 1).tolist()  # predicted tokens per text
            logprobs, mu, sigma = target_logprobs.cpu().numpy(), mu.cpu().numpy(), variance.sqrt().cpu().numpy()
            yield rows, [TokenStatistics(logprobs[row, :length], mu[row, :length], sigma[row, :length])
                         for row, length in enumerate(lengths)]

    return in_input_order(per_batch(), len(texts))


@dataclass(frozen=True)
class ContinuationScores:
    """Per token of a continuation given its prefix (teacher-forced): log p(y_t | prefix, y_<t),
    and whether y_t is the model's most likely next token there."""

    logprobs: np.ndarray
    argmax_hits: np.ndarray

    @property
    def total_logprob(self) -> float:
        return float(self.logprobs.sum())

    @property
    def mean_logprob(self) -> float:
        return float(self.logprobs.mean())


def continuation_ids(tokenizer, prefix: str, continuation: str) -> tuple[list[int], list[int]]:
    """<bos> prefix and the continuation, tokenised apart: a continuation that starts with a space
    tokenises exactly as it does inside the whole text (the byte-level pre-tokenizer splits there)."""
    return prompt_ids(tokenizer, prefix), tokenizer(continuation, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def continuation_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> list[ContinuationScores]:
    """Score each (prefix, continuation) pair with one batched forward pass."""
    split = [continuation_ids(tokenizer, prefix, continuation) for prefix, continuation in pairs]
    sequences = [prefix + continuation for prefix, continuation in split]

    def per_batch():
        batches = batched_sequence_logits(model, sequences, tokenizer.pad_token_id, batch_size)
        for rows, batch, log_probs, target_logprobs in log_probabilities(batches):
            hits = (log_probs.argmax(-1) == batch["input_ids"][:, 1:]).cpu().numpy()
            logprobs = target_logprobs.cpu().numpy()
            spans = [slice(len(split[row][0]) - 1, len(split[row][0]) - 1 + len(split[row][1])) for row in rows]
            # logits[t] predicts token t + 1: a continuation's scores start at its prefix's last position
            yield rows, [ContinuationScores(logprobs[i, span], hits[i, span]) for i, span in enumerate(spans)]

    return in_input_order(per_batch(), len(pairs))
