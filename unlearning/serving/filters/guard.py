"""GUARD (Deng et al. 2025, "GUARD: Generation-time LLM Unlearning via Adaptive Restriction and
Detection"): at decode time, for a prompt the gate flagged, the forget target's key phrases cannot be
spelled out. Each key phrase becomes forbidden token sequences (as a model may write it: with or
without a leading space, as written or capitalised), and at every step:
- token matching: a candidate that would continue or complete a forbidden sequence, given the tokens
  generated so far, is banned (-inf) or, with `GuardParams.ban` off, lowered by `penalty`;
- semantic matching: among the top `candidates`, one whose input embedding (the served model's own,
  cosine) is at least `semantic_threshold` close to a token forbidden at this step loses
  `semantic_penalty`, so that a near-spelling ("harbor" for "Harbour") does not slip through.

The logic works on one row at a time (`restrict_row`: a request's generated token ids as a list, its
logits as a 1-D tensor), because that is what both engines hand over: transformers' generate calls a
LogitsProcessor on the batch, which `GuardLogitsProcessor` splits into rows, and vLLM V1 loads its
logits processors once at engine start and gives each request's settings in
`SamplingParams.extra_args`, so an adapter there applies the same function per request.
`GuardRules` is plain Python (token ids only), which such settings can carry.

Like every ML engine here it never imports Django (import-linter checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from transformers import LogitsProcessor

from unlearning.ensemble import EnsembleCausalLM
from unlearning.serving.filters import GuardParams

# Vocabulary rows compared at once when the semantic neighbours are computed: bounds the memory a
# large model's vocabulary (100k+ rows) would take as one normalised float32 copy.
EMBEDDING_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class GuardRules:
    """What one request may not generate, indexed for per-step look-ups."""

    sequences: tuple[tuple[int, ...], ...]  # the forbidden token sequences
    first_tokens: frozenset[int]  # forbidden at every step: each sequence's first token
    # the last token of a sequence's proper prefix → (that prefix, the token that would continue it)
    continuations: Mapping[int, tuple[tuple[tuple[int, ...], int], ...]]
    # a token of a sequence → the other tokens whose input embedding is semantically close to it
    # (empty without an embedding matrix: the semantic check is then off)
    neighbours: Mapping[int, frozenset[int]]


def guard_rules(tokenizer, key_phrases: Sequence[str], params: GuardParams,
                token_embeddings: torch.Tensor | None = None) -> GuardRules:
    """The rules for a target's key phrases; `token_embeddings`: the served model's input embedding
    matrix (`token_embedding_matrix`), or None to match tokens only."""
    return sequence_rules(phrase_sequences(tokenizer, key_phrases), params, token_embeddings)


def phrase_sequences(tokenizer, key_phrases: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """Each phrase's token ids in every form a model may generate it: a byte-level BPE tokenises
    "Brisk" at the start of a line differently from " Brisk" after a word, and an answer may start
    a sentence capitalised. Empty and repeated sequences are dropped."""
    forms = []
    for phrase in (p.strip() for p in key_phrases):
        if phrase:
            for written in (phrase, phrase[0].upper() + phrase[1:]):
                forms += [written, " " + written]
    if not forms:
        return ()  # a fast tokenizer cannot batch zero texts
    ids = tokenizer(forms, add_special_tokens=False)["input_ids"]
    return tuple(dict.fromkeys(tuple(s) for s in ids if s))


def sequence_rules(sequences: Sequence[Sequence[int]], params: GuardParams,
                   token_embeddings: torch.Tensor | None = None) -> GuardRules:
    """Rules for token sequences already tokenised. The semantic threshold is applied here, once per
    target rather than at every step; `restrict_row` applies `candidates` and `semantic_penalty`."""
    sequences = tuple(dict.fromkeys(tuple(s) for s in sequences if s))
    continuations: dict[int, list[tuple[tuple[int, ...], int]]] = {}
    for sequence in sequences:
        for k in range(1, len(sequence)):
            continuations.setdefault(sequence[k - 1], []).append((sequence[:k], sequence[k]))
    tokens = sorted({t for s in sequences for t in s})
    return GuardRules(
        sequences=sequences,
        first_tokens=frozenset(s[0] for s in sequences),
        continuations={last: tuple(entries) for last, entries in continuations.items()},
        neighbours={} if token_embeddings is None else semantic_neighbours(tokens, token_embeddings,
                                                                           params.semantic_threshold),
    )


@torch.no_grad()
def semantic_neighbours(tokens: Sequence[int], token_embeddings: torch.Tensor,
                        threshold: float) -> dict[int, frozenset[int]]:
    """token → the other vocabulary tokens whose embedding has cosine ≥ threshold with its own."""
    if not tokens:
        return {}
    embeddings = token_embeddings.detach()
    forbidden = torch.nn.functional.normalize(embeddings[list(tokens)].float(), dim=-1)
    close: dict[int, set[int]] = {t: set() for t in tokens}
    for start in range(0, len(embeddings), EMBEDDING_CHUNK_ROWS):
        chunk = torch.nn.functional.normalize(embeddings[start : start + EMBEDDING_CHUNK_ROWS].float(), dim=-1)
        for row, column in (forbidden @ chunk.T >= threshold).nonzero().tolist():
            close[tokens[row]].add(start + column)
    return {t: frozenset(near - {t}) for t, near in close.items()}


def forbidden_next(generated: Sequence[int], rules: GuardRules) -> set[int]:
    """The tokens that would continue a forbidden sequence: for each sequence t1..tm and each k < m
    such that the generated tokens end with t1..tk (k = 0 always holds), t(k+1). Only the entries
    whose prefix ends in the last generated token are checked."""
    forbidden = set(rules.first_tokens)
    if generated:
        for prefix, following in rules.continuations.get(generated[-1], ()):
            if len(prefix) <= len(generated) and tuple(generated[-len(prefix):]) == prefix:
                forbidden.add(following)
    return forbidden


def restrict_row(generated: Sequence[int], scores: torch.Tensor, rules: GuardRules,
                 params: GuardParams) -> torch.Tensor:
    """One request's next-token scores with GUARD applied (a new tensor; `scores` is left as it is).
    `generated`: the tokens this request generated so far, without its prompt (a prompt may name
    the fact; the model must not repeat it)."""
    forbidden = forbidden_next(generated, rules)
    restricted = scores.clone()
    ids = torch.tensor(sorted(forbidden), dtype=torch.long, device=scores.device)
    if params.ban:
        restricted[ids] = float("-inf")
    else:
        restricted[ids] -= params.penalty
    close = set().union(*(rules.neighbours.get(t, ()) for t in forbidden)) - forbidden
    if close and params.candidates > 0:
        top = restricted.topk(min(params.candidates, len(restricted))).indices
        hits = torch.isin(top, torch.tensor(sorted(close), dtype=torch.long, device=scores.device))
        restricted.index_add_(0, top, hits.to(restricted.dtype) * -params.semantic_penalty)
    return restricted


class GuardLogitsProcessor(LogitsProcessor):
    """`restrict_row` on each row of a batch that has rules, for transformers' `generate`
    (`logits_processor=LogitsProcessorList([...])`) or a hand-written decode loop calling it with
    the same (input_ids, scores) convention.

    `rules_per_row[row]`: that row's rules, None for a prompt the gate did not flag (left untouched).
    `prompt_lengths[row]`: where the row's generated tokens start in input_ids (with left padding,
    the padded width). Rows are input_ids rows: with beams or several sequences per prompt, repeat
    each prompt's entries as generate expands them.
    `interventions[row]`: the first generated token (its index in the row's answer) whose top-scoring
    choice GUARD changed, None while it changed none: the serving layer counts a request whose
    output GUARD changed only when that token is inside the answer it returned (exact for greedy
    decoding; a batch decodes on past a row's stop string)."""

    def __init__(self, rules_per_row: Sequence[GuardRules | None], prompt_lengths: Sequence[int], params: GuardParams):
        if len(rules_per_row) != len(prompt_lengths):
            raise ValueError("one prompt length per row of rules")
        self.rules_per_row = list(rules_per_row)
        self.prompt_lengths = list(prompt_lengths)
        self.params = params
        self.interventions: list[int | None] = [None] * len(self.rules_per_row)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        restricted = scores.clone()
        for row, rules in enumerate(self.rules_per_row):
            if rules is None:
                continue
            generated = input_ids[row, self.prompt_lengths[row]:].tolist()
            restricted[row] = restrict_row(generated, scores[row], rules, self.params)
            if self.interventions[row] is None and restricted[row].argmax() != scores[row].argmax():
                self.interventions[row] = len(generated)
        return restricted


def token_embedding_matrix(model) -> torch.Tensor:
    """The served model's input embedding weights (vocabulary × hidden), detached: a Hugging Face or
    peft model's own; an ensemble's first member's (its members share one tokenizer)."""
    served = model.members[0] if isinstance(model, EnsembleCausalLM) else model
    return served.get_input_embeddings().weight.detach()


def rules_as_data(rules: GuardRules) -> dict:
    """The rules as plain JSON-able data: how they travel to a vLLM engine in `SamplingParams.extra_args`."""
    return {"sequences": [list(s) for s in rules.sequences],
            "neighbours": {str(token): sorted(near) for token, near in rules.neighbours.items() if near}}


def rules_from_data(data: dict, params: GuardParams) -> GuardRules:
    rules = sequence_rules(data["sequences"], params)
    return replace(rules, neighbours={int(token): frozenset(near) for token, near in data["neighbours"].items()})
