"""Finding the targets' names in a text, at a cost that does not grow with the number of targets:
an index from the words of every name to its targets gives the few candidates (one dictionary
lookup per word of the text); only those are compared, word window by word window, with difflib's
ratio, so that "Alma Kestral" or "A. Kestrel" still match. An initial alone is not indexed (it
points at too many people). Pure Python.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from unlearning.serving.targets import ForgetTargets

WORD = re.compile(r"\w+\.?", re.UNICODE)


@dataclass(frozen=True)
class NameMatch:
    target: int
    start: int  # character span in the text
    end: int
    ratio: float


def key(word: str) -> str:
    return word.lower().rstrip(".")


class NameIndex:
    def __init__(self, targets: ForgetTargets):
        self.names = [[(name.lower(), len(WORD.findall(name))) for name in target.names] for target in targets.targets]
        self.index: dict[str, set[int]] = {}
        for number, target in enumerate(targets.targets):
            for name in target.names:
                for word in WORD.findall(name):
                    if len(key(word)) > 1:
                        self.index.setdefault(key(word), set()).add(number)

    def matches(self, text: str, ratio: float) -> list[NameMatch]:
        """Every window of the text that matches a name at `ratio` or better (the best per window)."""
        spans = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]
        candidates = set().union(*(self.index.get(key(w), set()) for *_, w in spans)) if spans else set()
        found: list[NameMatch] = []
        for target in sorted(candidates):
            for name, width in self.names[target]:
                for first in range(max(0, len(spans) - width + 1)):
                    window = spans[first : first + width]
                    candidate = text[window[0][0] : window[-1][1]].lower()
                    score = difflib.SequenceMatcher(None, candidate, name).ratio()
                    if score >= ratio:
                        found.append(NameMatch(target, window[0][0], window[-1][1], score))
        return found
