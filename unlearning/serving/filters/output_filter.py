"""The last check: the finished text against the targets, for every prompt (a prompt the gate let
through can still draw a forgotten fact out of the model).

What counts as a leak depends on what the prompt was about. A fact alone ("glassblower", a town)
is shared by many people, so it counts only in an answer to a prompt the gate flagged as about
its target; otherwise forbidding it would blank out retained people's answers. In every answer:
a target's name (exactly, or as a close misspelling: unlearning.serving.names) and a sentence that says what one of the
target's removed texts said (sentence-encoder similarity). Found spans are redacted, or the whole
answer refused, as configured; the reason (exact, fuzzy, semantic) is returned for counting,
never the text. Pure ML code: no Django.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearning.serving.filters import OutputFilterParams
from unlearning.serving.names import NameIndex
from unlearning.serving.targets import ForgetTargets

REDACTED = "[removed]"
SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
WORD_SPAN = re.compile(r"\S+")


@dataclass(frozen=True)
class Checked:
    text: str
    action: str | None = None  # None (passed), "redact" or "refuse"
    reason: str | None = None  # "exact", "fuzzy" or "semantic"


def exact_spans(text: str, phrases: Sequence[str]) -> list[tuple[int, int]]:
    lowered = text.lower()
    spans = []
    for phrase in phrases:
        for match in re.finditer(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", lowered):
            spans.append(match.span())
    return spans


def fuzzy_spans(text: str, phrases: Sequence[str], ratio: float) -> list[tuple[int, int]]:
    """Windows of as many words as the phrase whose difflib ratio to it reaches `ratio`."""
    tokens = [(m.start(), m.end(), m.group().strip(".,;:!?\"'()").lower()) for m in WORD_SPAN.finditer(text)]
    spans = []
    for phrase in phrases:
        width = len(phrase.split())
        for start in range(max(0, len(tokens) - width + 1)):
            window = tokens[start : start + width]
            candidate = " ".join(t for *_, t in window)
            if difflib.SequenceMatcher(None, candidate, phrase.lower()).ratio() >= ratio:
                spans.append((window[0][0], window[-1][1]))
    return spans


def redacted(text: str, spans: Sequence[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, last = [], 0
    for start, end in merged:
        pieces += [text[last:start], REDACTED]
        last = end
    return "".join(pieces + [text[last:]])


class OutputFilter:
    def __init__(self, targets: ForgetTargets, encoder, params: OutputFilterParams):
        self.targets, self.encoder, self.params = targets, encoder, params
        self.name_index = NameIndex(targets)
        texts = [(i, text) for i, t in enumerate(targets.targets) for text in t.texts]
        self.text_vectors = encoder.encode([text for _, text in texts]) if texts else torch.zeros(0, 1)
        self.prepared: dict[str, torch.Tensor] = {}

    def check(self, text: str, flagged_target: int | None = None) -> Checked:
        phrases = list(self.targets.targets[flagged_target].key_phrases) if flagged_target is not None else []
        names = self.name_index.matches(text, self.params.fuzzy_match)
        for reason, spans in (("exact", lambda: exact_spans(text, phrases) + [
                                  (m.start, m.end) for m in names if m.ratio == 1.0]),
                              ("fuzzy", lambda: fuzzy_spans(text, phrases, self.params.fuzzy_match) + [
                                  (m.start, m.end) for m in names]),
                              ("semantic", lambda: self.semantic_spans(text))):
            found = spans()
            if found:
                return self.act(text, found, reason)
        return Checked(text)

    def prepare(self, texts: Sequence[str]) -> None:
        """Embed the sentences of a batch's outputs in one call (the encoder is the check's cost);
        `check` then finds them here. The previous batch's are dropped."""
        sentences = list(dict.fromkeys(m.group() for text in texts for m in self.sentences(text)))
        self.prepared = dict(zip(sentences, self.encoder.encode(sentences))) if sentences and len(self.text_vectors) else {}

    @staticmethod
    def sentences(text: str) -> list[re.Match]:
        """The sentences the semantic check compares: three words or more."""
        return [m for m in SENTENCE.finditer(text) if len(m.group().split()) >= 3]

    def semantic_spans(self, text: str) -> list[tuple[int, int]]:
        sentences = self.sentences(text)
        if not sentences or not len(self.text_vectors):
            return []
        missing = [m.group() for m in sentences if m.group() not in self.prepared]
        fresh = dict(zip(missing, self.encoder.encode(missing))) if missing else {}
        vectors = torch.stack([self.prepared.get(m.group(), fresh.get(m.group())) for m in sentences])
        similarity = vectors @ self.text_vectors.T
        close = similarity.max(dim=1).values >= self.params.semantic_threshold
        return [m.span() for m, hit in zip(sentences, close.tolist()) if hit]

    def act(self, text: str, spans, reason: str) -> Checked:
        if self.params.action == "refuse":
            return Checked(self.params.refusal, "refuse", reason)
        return Checked(redacted(text, spans), "redact", reason)
