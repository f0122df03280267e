"""The last check: the finished text against the targets, for every prompt (a prompt the gate let
through can still draw a forgotten fact out of the model).

What counts as a leak depends on what the prompt was about. A fact alone ("glassblower", a town)
is shared by many people, so it counts only in an answer to a prompt the gate flagged as about
its target; otherwise forbidding it would blank out retained people's answers. In every answer:
a target's name (exactly, or as a close misspelling: unlearning.serving.names) and a sentence that says what one of the
target's removed texts said (sentence-encoder similarity). Found spans are redacted, or the whole
answer refused, as configured; the reason (exact, fuzzy, semantic) is returned for counting,
never the text. Every kind of span is looked for, so that an exact name found does not let a
misspelled fact through. Pure ML code: no Django.
"""

from __future__ import annotations

import difflib
import math
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


REASONS = ("exact", "fuzzy", "semantic")  # the strongest first: an answer's reason is its strongest span's


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    reason: str  # one of REASONS


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
        longest = max((len(p) for t in targets.targets for p in (*t.names, *t.key_phrases)), default=0)
        # The most characters a name or fact match can span: a fuzzy match at ratio r is at most
        # (2/r - 1) times as long as what it matches; the rest is room for spacing and punctuation.
        self.reach = math.ceil(longest * (2 / params.fuzzy_match - 1)) + 16

    def check(self, text: str, flagged_target: int | None = None) -> Checked:
        """The whole text checked at once (ALU's answers and variants)."""
        found = self.spans(text, flagged_target)
        return self.act(text, found) if found else Checked(text)

    def spans(self, text: str, flagged_target: int | None = None, complete: bool = True,
              seen: dict[str, bool] | None = None) -> list[Span]:
        """Every span of the text that says what must stay unsaid, with its reason. `complete`:
        False while the text is still being generated (its unfinished last sentence is not compared
        by meaning yet); `seen`: sentences already compared for this answer, and whether they matched."""
        phrases = list(self.targets.targets[flagged_target].key_phrases) if flagged_target is not None else []
        found = [Span(start, end, "exact") for start, end in exact_spans(text, phrases)]
        found += [Span(m.start, m.end, "exact" if m.ratio == 1.0 else "fuzzy")
                  for m in self.name_index.matches(text, self.params.fuzzy_match)]
        found += [Span(start, end, "fuzzy") for start, end in fuzzy_spans(text, phrases, self.params.fuzzy_match)]
        found += [Span(start, end, "semantic") for start, end in self.semantic_spans(text, complete, seen)]
        return found

    def prepare(self, texts: Sequence[str]) -> None:
        """Embed the sentences of a batch's outputs in one call (the encoder is the check's cost);
        `check` then finds them here. The previous batch's are dropped."""
        sentences = list(dict.fromkeys(m.group() for text in texts for m in self.sentences(text)))
        self.prepared = dict(zip(sentences, self.encoder.encode(sentences))) if sentences and len(self.text_vectors) else {}

    @staticmethod
    def sentences(text: str, complete: bool = True) -> list[re.Match]:
        """The sentences the semantic check compares: three words or more; with `complete` False,
        not an unfinished last one."""
        found = [m for m in SENTENCE.finditer(text) if len(m.group().split()) >= 3]
        if not complete and found and not (found[-1].group().endswith((".", "!", "?")) or
                                           text[found[-1].end() : found[-1].end() + 1] == "\n"):
            found.pop()
        return found

    def semantic_spans(self, text: str, complete: bool = True, seen: dict[str, bool] | None = None) -> list[tuple[int, int]]:
        sentences = self.sentences(text, complete)
        if not sentences or not len(self.text_vectors):
            return []
        seen = {} if seen is None else seen
        prepared = self.prepared  # one batch's vectors, even when another thread prepares the next
        fresh = [m.group() for m in sentences if m.group() not in seen and m.group() not in prepared]
        vectors = dict(zip(fresh, self.encoder.encode(fresh))) if fresh else {}
        unseen = list(dict.fromkeys(m.group() for m in sentences if m.group() not in seen))
        if unseen:
            stacked = torch.stack([prepared[s] if s in prepared else vectors[s] for s in unseen])
            close = (stacked @ self.text_vectors.T).max(dim=1).values >= self.params.semantic_threshold
            seen.update(zip(unseen, close.tolist()))
        return [m.span() for m in sentences if seen[m.group()]]

    def act(self, text: str, spans: Sequence[Span]) -> Checked:
        reason = min((span.reason for span in spans), key=REASONS.index)
        if self.params.action == "refuse":
            return Checked(self.params.refusal, "refuse", reason)
        return Checked(redacted(text, [(span.start, span.end) for span in spans]), "redact", reason)
