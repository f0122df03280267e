"""The gate: is this prompt about a forget target? The other filters act only on prompts it flags,
so that everyone else's answers are untouched (ECO flags only above a high-confidence threshold).

Two signals, each cheap in the number of targets:
- a name: the prompt names a target, a misspelling or an initial included (unlearning.serving.names);
- meaning: the prompt's sentence vector is close to one of the targets' questions or texts, all
  embedded once when the filters load; one matrix product scores a batch of prompts against
  every target.
The meaning threshold is calibrated on prompts about the targets (their questions and paraphrases)
against retained people's and general prompts: the lowest threshold whose false-positive rate on
the latter stays within the budget, reported with its exact (Clopper-Pearson) interval.
Pure ML code: no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from audits.metrics import clopper_pearson
from unlearning.serving.filters import PromptClassifierParams
from unlearning.serving.names import NameIndex
from unlearning.serving.targets import ForgetTargets


@dataclass(frozen=True)
class Flag:
    target: int  # index in the targets
    score: float  # name match ratio, or cosine similarity
    by: str  # "name" or "meaning"
    names: tuple[str, ...] = ()  # the names as the prompt wrote them (for ECO's entity tokens)


class PromptClassifier:
    def __init__(self, targets: ForgetTargets, encoder, params: PromptClassifierParams):
        self.targets, self.encoder, self.params = targets, encoder, params
        self.name_index = NameIndex(targets)
        anchors = [(i, text) for i, t in enumerate(targets.targets) for text in (*t.questions, *t.texts)]
        self.anchor_owner = torch.tensor([i for i, _ in anchors], dtype=torch.long)
        self.anchors = encoder.encode([text for _, text in anchors])

    def name_flags(self, prompt: str) -> Flag | None:
        """The closest name of a target in the prompt, if one reaches `name_match`."""
        found = self.name_index.matches(prompt, self.params.name_match)
        if not found:
            return None
        best = max(found, key=lambda m: m.ratio)
        return Flag(best.target, best.ratio, "name",
                    tuple(dict.fromkeys(prompt[m.start : m.end] for m in found if m.target == best.target)))

    def meaning_scores(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each prompt's highest cosine similarity to any target's anchor, and whose anchor it was."""
        if not len(self.anchors):
            return torch.full((len(prompts),), -1.0), torch.zeros(len(prompts), dtype=torch.long)
        vectors, rows = self.encoder.encode_windows(prompts)
        best, where = (vectors @ self.anchors.T).max(dim=1)
        scores, owners = torch.full((len(prompts),), -1.0), torch.zeros(len(prompts), dtype=torch.long)
        for row, score, owner in zip(rows, best.tolist(), self.anchor_owner[where].tolist()):
            if score > scores[row]:  # a long prompt: its closer window
                scores[row], owners[row] = score, owner
        return scores, owners

    def classify(self, prompts: Sequence[str], threshold: float | None = None) -> list[Flag | None]:
        """Names first; only the prompts that name no target are embedded (the encoder is the cost)."""
        threshold = self.params.semantic_threshold if threshold is None else threshold
        flags = [self.name_flags(prompt) for prompt in prompts]
        unnamed = [row for row, flag in enumerate(flags) if flag is None]
        if threshold is not None and unnamed:
            scores, owners = self.meaning_scores([prompts[row] for row in unnamed])
            for row, score, owner in zip(unnamed, scores.tolist(), owners.tolist()):
                if score >= threshold:
                    flags[row] = Flag(owner, score, "meaning")
        return flags


@dataclass(frozen=True)
class Calibration:
    threshold: float | None  # None: no negatives to calibrate on, the meaning gate is off
    flagged_positives: int
    positives: int
    flagged_negatives: int
    negatives: int

    @property
    def true_positive_rate(self) -> float:
        return self.flagged_positives / self.positives if self.positives else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.flagged_negatives / self.negatives if self.negatives else 0.0

    def as_dict(self) -> dict:
        return {"threshold": self.threshold, "flagged_positives": self.flagged_positives, "positives": self.positives,
                "flagged_negatives": self.flagged_negatives, "negatives": self.negatives,
                "true_positive_rate": self.true_positive_rate,
                "true_positive_interval": clopper_pearson(self.flagged_positives, self.positives),
                "false_positive_rate": self.false_positive_rate,
                "false_positive_interval": clopper_pearson(self.flagged_negatives, self.negatives)}


def calibrate(classifier: PromptClassifier, positives: Sequence[str], negatives: Sequence[str]) -> Calibration:
    """The lowest meaning threshold at which the gate (names or meaning) flags at most
    `max_false_positive_rate` of the negatives; never below the highest meaning score a negative
    flagged by name alone cannot explain."""
    budget = int(np.floor(classifier.params.max_false_positive_rate * len(negatives)))
    named_negatives = [classifier.name_flags(p) is not None for p in negatives]
    allowed = max(0, budget - sum(named_negatives))
    scores = classifier.meaning_scores(negatives)[0].numpy() if negatives else np.array([])
    unnamed = np.sort(scores[~np.array(named_negatives, dtype=bool)])[::-1] if len(scores) else scores
    if not len(unnamed):  # nothing to calibrate against: the meaning gate stays off, names alone flag
        threshold = None
    else:  # strictly above the (allowed+1)-th highest unnamed negative: at most `allowed` of them pass
        threshold = min(float(np.nextafter(unnamed[min(allowed, len(unnamed) - 1)], np.inf)), 1.0)
    flagged_pos = sum(f is not None for f in classifier.classify(positives, threshold))
    # The negatives the gate flags at this threshold, from the scores above (not embedded again):
    # those named, and the unnamed at or above it.
    flagged_neg = sum(named_negatives) + (int((unnamed >= threshold).sum()) if threshold is not None else 0)
    return Calibration(threshold, flagged_pos, len(positives), flagged_neg, len(negatives))
