"""Audit metrics as plain functions over numbers and strings (numpy only: no torch, no Django).

Conventions, printed on every certificate:
- a membership score is higher for texts that look more like training members;
- AUC = P(score(forget item) > score(holdout item)) + ½ P(tie): 0.5 means the forget set looks
  like never-trained data, 1.0 means every forget text looks more "trained" than every holdout text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
from scipy.stats import beta, rankdata


def roc_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """AUC as the Mann-Whitney U statistic over all (member, non-member) pairs, ties counting ½."""
    members = np.asarray(member_scores, dtype=float)
    nonmembers = np.asarray(nonmember_scores, dtype=float)
    if members.size == 0 or nonmembers.size == 0:
        raise ValueError("AUC needs at least one member and one non-member score")
    ranks = rankdata(np.concatenate([members, nonmembers]))  # ties get their average rank
    u = ranks[: members.size].sum() - members.size * (members.size + 1) / 2
    return float(u / (members.size * nonmembers.size))


def loss_score(token_logprobs: np.ndarray) -> float:
    """LOSS attack (Yeom et al.): the mean token log-likelihood, i.e. minus the text's loss."""
    return float(np.mean(token_logprobs))


def min_k_percent(token_logprobs: np.ndarray, k: float = 0.2) -> float:
    """Min-K% (Shi et al. 2024): mean of the lowest k% token log-probabilities (at least one token)."""
    count = max(1, int(len(token_logprobs) * k))
    return float(np.sort(np.asarray(token_logprobs))[:count].mean())


def zlib_score(token_logprobs: np.ndarray, text: str) -> float:
    """zlib (Carlini et al. 2021): −loss / zlib-compressed length in bytes; members have a low loss
    for how complex the text is, so they score higher."""
    loss = -float(np.mean(token_logprobs))
    return -loss / len(zlib.compress(text.encode("utf-8")))


def lowercase_score(token_logprobs: np.ndarray, lowercase_logprobs: np.ndarray) -> float:
    """Lowercase (Carlini et al. 2021): −loss(text) / loss(lowercased text); a member's exact
    casing is much likelier than its lowercased variant, so members score higher."""
    loss, lowercase_loss = -float(np.mean(token_logprobs)), -float(np.mean(lowercase_logprobs))
    return -loss / lowercase_loss


def min_k_plus_plus(token_logprobs: np.ndarray, mu: np.ndarray, sigma: np.ndarray, k: float = 0.2) -> float:
    """Min-K%++ (Zhang et al. 2024): mean of the lowest k% of z_t = (log p(x_t) − μ_t) / σ_t, where μ_t
    and σ_t² are the mean and variance of log p under the model's own next-token distribution."""
    z = (np.asarray(token_logprobs) - np.asarray(mu)) / np.asarray(sigma)
    count = max(1, int(len(z) * k))
    return float(np.sort(z)[:count].mean())


_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """ROUGE's standard tokenisation: lower case, anything but letters and digits separates tokens."""
    return [token for token in _NON_ALPHANUMERIC.sub(" ", text.lower()).split() if token]


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0]
        for j, token_b in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token_a == token_b else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over the longest common subsequence of tokens (0 when either side is empty)."""
    predicted, target = rouge_tokens(prediction), rouge_tokens(reference)
    if not predicted or not target:
        return 0.0
    lcs = _lcs_length(predicted, target)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(predicted), lcs / len(target)
    return 2 * precision * recall / (precision + recall)


def tpr_at_fpr(member_scores: Sequence[float], nonmember_scores: Sequence[float], fpr: float) -> tuple[int, int]:
    """True positives at a false-positive rate of at most `fpr`: the threshold is the highest
    non-member score that leaves no more than ⌊fpr·n⌋ non-members strictly above it. Returns
    (members strictly above the threshold, number of members)."""
    nonmembers = np.sort(np.asarray(nonmember_scores, dtype=float))[::-1]
    allowed = int(np.floor(fpr * nonmembers.size))
    threshold = nonmembers[allowed] if allowed < nonmembers.size else -np.inf
    members = np.asarray(member_scores, dtype=float)
    return int((members > threshold).sum()), int(members.size)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval: with zero successes in n trials the upper bound is about 3/n."""
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def share_beyond_percentile(member_scores: Sequence[float], nonmember_scores: Sequence[float], percentile: float = 99) -> float:
    """Share of members scoring above the non-members' given percentile."""
    cutoff = np.percentile(np.asarray(nonmember_scores, dtype=float), percentile)
    return float((np.asarray(member_scores, dtype=float) > cutoff).mean())


def privleak(auc_unlearned: float, auc_reference: float) -> float:
    """PrivLeak (MUSE): (AUC(unlearned) − AUC(reference)) / AUC(reference) × 100. Near 0: like the
    reference. With this module's AUC convention (members score higher) well above 0 is
    under-unlearned (the subject's texts still look trained) and well below 0 over-unlearned;
    MUSE's paper states the opposite signs because its AUC runs the other way. Only ever against a real
    retrained reference, never an assumed 0.5."""
    return (auc_unlearned - auc_reference) / auc_reference * 100


def exposure(secret_score: float, reference_scores: Sequence[float]) -> float:
    """Canary exposure (Carlini et al. 2019): log2|R| − log2 rank, where R is the inserted secret
    together with never-inserted reference secrets and rank 1 is the likeliest (highest score).
    Ties rank the secret last among them (conservative). A secret the model never saw has an
    expected exposure of about 1/ln 2 ≈ 1.44 bits; the maximum is log2|R|."""
    references = np.asarray(reference_scores, dtype=float)
    rank = 1 + int((references >= secret_score).sum())
    return float(np.log2(references.size + 1) - np.log2(rank))


def extraction_strength(argmax_hits: Sequence[bool]) -> float:
    """Extraction Strength (Carlini et al. 2021, as in open-unlearning): 1 − k*/|y|, where k* is the
    shortest prefix of y after which greedy decoding reproduces the rest of y exactly (teacher-forced
    argmax matches every later token). 0 when even the last token is not the model's greedy choice."""
    hits = np.asarray(argmax_hits, dtype=bool)
    misses = np.flatnonzero(~hits)
    shortest_prefix = 0 if misses.size == 0 else int(misses[-1]) + 1
    return 1.0 - shortest_prefix / hits.size


def sampled_extraction_probability(total_logprob: float, samples: int) -> float:
    """Probability that at least one of `samples` independent samples (temperature 1) reproduces
    the continuation: 1 − (1 − p)^n with p = exp(Σ log p(y_t)) (Hayes et al. 2024), computed stably."""
    p = float(np.exp(total_logprob))
    return float(-np.expm1(samples * np.log1p(-p))) if p < 1 else 1.0


def truth_ratio(true_mean_logprob: float, perturbed_mean_logprobs: Sequence[float]) -> float:
    """TOFU's truth ratio: the mean over wrong answers of P(wrong | q)^(1/|wrong|), divided by
    P(true answer | q)^(1/|answer|). Well below 1: the model prefers the truth; about 1 or more: it
    cannot tell the truth from plausible wrong answers. (TOFU puts a paraphrase of the answer in the
    denominator so that a long answer's exact wording does not count as knowledge; the demo world's
    answers are the bare fact, a city or a year, with no wording to paraphrase.)"""
    return float(np.mean(np.exp(np.asarray(perturbed_mean_logprobs, dtype=float))) / np.exp(true_mean_logprob))


def truth_preference(ratio: float) -> float:
    """max(0, 1 − truth ratio) (TOFU's reported form): 1 when the model always prefers the truth,
    0 when it does not prefer it at all; bounded, so its mean over items is not ruled by one outlier."""
    return max(0.0, 1.0 - ratio)


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic D: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    points = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, points, side="right") / a.size
                        - np.searchsorted(b, points, side="right") / b.size).max())
