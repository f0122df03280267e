"""Finding the targets' names in a text, at a cost that does not grow with the number of targets:
an index from the words of every name to its targets gives the few candidates (one dictionary
lookup per word of the text); only those are compared, word window by word window, with difflib's
ratio, so that "Alma Kestral" or "A. Kestrel" still match. An initial alone is not indexed (it
points at too many people). Scripts written without spaces between words (Chinese, Japanese; Korean
names, which take their particles attached) have no words to look up: a name in them is indexed by
its character pairs, and compared with the text's windows of its own length. Pure Python.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from unlearning.serving.targets import ForgetTargets

WORD = re.compile(r"\w+\.?", re.UNICODE)
SPACELESS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


@dataclass(frozen=True)
class NameMatch:
    target: int
    start: int  # character span in the text
    end: int
    ratio: float


def key(word: str) -> str:
    return word.lower().rstrip(".")


def pairs(text: str) -> set[str]:
    """The character pairs of a text's runs in scripts written without spaces."""
    return {run[i : i + 2] for run in SPACELESS.findall(text) for i in range(max(1, len(run) - 1))}


class NameIndex:
    def __init__(self, targets: ForgetTargets):
        self.names = [[(name.lower(), len(WORD.findall(name)), bool(SPACELESS.search(name))) for name in target.names]
                      for target in targets.targets]
        self.index: dict[str, set[int]] = {}  # a name's word, or a spaceless name's character pair → targets
        for number, target in enumerate(targets.targets):
            for name in target.names:
                for word in WORD.findall(name):
                    if len(key(word)) > 1:
                        self.index.setdefault(key(word), set()).add(number)
                for pair in pairs(name):
                    self.index.setdefault(pair, set()).add(number)

    def matches(self, text: str, ratio: float) -> list[NameMatch]:
        """Every window of the text that matches a name at `ratio` or better (the best per window)."""
        spans = [(m.start(), m.end(), m.group()) for m in WORD.finditer(text)]
        looked_up = {key(w) for *_, w in spans} | pairs(text)
        candidates = set().union(*(self.index.get(k, set()) for k in looked_up)) if looked_up else set()
        found: list[NameMatch] = []
        for target in sorted(candidates):
            for name, width, spaceless in self.names[target]:
                windows = character_windows(text, len(name)) if spaceless else word_windows(text, spans, width, name)
                for start, end in windows:
                    score = difflib.SequenceMatcher(None, text[start:end].lower(), name).ratio()
                    if score >= ratio:
                        found.append(NameMatch(target, start, end, score))
        return found


def word_windows(text: str, spans, width: int, name: str) -> list[tuple[int, int]]:
    """The text's windows of `width` words; a sentence's full stop after the last is not the name's."""
    windows = []
    for first in range(max(0, len(spans) - width + 1)):
        start, end = spans[first][0], spans[first + width - 1][1]
        windows.append((start, end - 1 if text[end - 1] == "." and not name.endswith(".") else end))
    return windows


def character_windows(text: str, width: int) -> list[tuple[int, int]]:
    """The text's windows of `width` characters that start in a run of a spaceless script."""
    return [(start, start + width) for run in SPACELESS.finditer(text) for start in range(run.start(), run.end())
            if start + width <= len(text)]
