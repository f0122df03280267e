"""One decode loop for every model the service serves: a Hugging Face causal LM (with its KV
cache), a peft adapter on one, and the SISA ensemble (which recomputes the whole sequence each
step). It yields token by token, so the endpoint streams what it generates; it applies logits
processors in transformers' convention (`processor(input_ids, scores) -> scores`, GUARD's adapter
among them); greedy or sampled (temperature, top-p, a seed). Prompts in one call have one length:
callers batch by length, so no padding ever shifts a position. Pure ML code: no Django.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from unlearning.lm import context_length
from unlearning.numerics import autocast, model_device

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 16
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the text is cut before the first of these, and decoding ends there


def rows_by_length(prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """The rows of each prompt length, in input order: the batches `decode` takes."""
    rows: dict[int, list[int]] = {}
    for row, prompt in enumerate(prompts):
        rows.setdefault(len(prompt), []).append(row)
    return list(rows.values())


def end_token_ids(tokenizer, generation_config=None) -> tuple[int, ...]:
    """The tokens that end an answer: end-of-text first, then the end-of-turn tokens a chat model's
    generation config lists beside it (Llama 3's <|eot_id|>, for one)."""
    configured = getattr(generation_config, "eos_token_id", None)
    ends = [tokenizer.eos_token_id, *(configured if isinstance(configured, (list, tuple)) else [configured])]
    return tuple(dict.fromkeys(end for end in ends if end is not None))


def generation_config_of(model):
    """A loaded model's generation config (the ensemble's: its first member's)."""
    return getattr(model.members[0] if hasattr(model, "members") else model, "generation_config", None)


def room(model, prompt_length: int, max_new_tokens: int) -> int:
    """How many tokens fit after a prompt of this length in the model's context."""
    return max(0, min(max_new_tokens, context_length(model) - prompt_length))


def next_tokens(scores: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    if sampling.temperature <= 0:
        return scores.argmax(-1)
    probabilities = torch.softmax(scores / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        ordered, order = probabilities.sort(dim=-1, descending=True)
        outside = ordered.cumsum(-1) - ordered > sampling.top_p  # keep the smallest set reaching top_p
        ordered = ordered.masked_fill(outside, 0.0)
        probabilities = torch.zeros_like(probabilities).scatter(-1, order, ordered)
    return torch.multinomial(probabilities, 1, generator=generator)[:, 0]


def cache_argument(model) -> str | None:
    """The keyword a model takes its KV cache by: `cache` (transformers 5.2x), `past_key_values`
    (earlier), or None (the ensemble, which recomputes the whole sequence)."""
    forward = (model.get_base_model() if hasattr(model, "get_base_model") else model).forward
    parameters = inspect.signature(forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def returned_cache(output):
    return getattr(output, "cache", None) or getattr(output, "past_key_values", None)


@torch.no_grad()
def decode(model, prompts: Sequence[Sequence[int]], sampling: Sampling, end_ids: Sequence[int],
           processors: Sequence[Processor] = ()) -> Iterator[torch.Tensor]:
    """Yield each step's next token per row until every row has ended (chosen one of `end_ids`; it
    then repeats the first of them) or the room is spent. Prompts must share one length."""
    lengths = {len(p) for p in prompts}
    if len(lengths) != 1:
        raise ValueError("prompts decoded together must share one length")
    steps = room(model, lengths.pop(), sampling.max_new_tokens)
    where = model_device(model)
    sequences = torch.tensor([list(p) for p in prompts], device=where)
    generator = None
    if sampling.temperature > 0:
        generator = torch.Generator(device=where)
        generator.manual_seed(sampling.seed if sampling.seed is not None else int(torch.seed() % 2**63))
    finished = torch.zeros(len(sequences), dtype=torch.bool, device=where)
    ends = torch.tensor(list(end_ids), dtype=torch.long, device=where)
    keyword = cache_argument(model)
    cache, fresh = None, sequences
    for _ in range(steps):
        cached = {keyword: cache, "use_cache": True} if keyword else {}
        with autocast(where):
            output = model(input_ids=fresh, attention_mask=torch.ones_like(sequences), **cached)
        cache = returned_cache(output) if keyword else None
        scores = output.logits[:, -1].float()
        for processor in processors:
            scores = processor(sequences, scores)
        chosen = next_tokens(scores, sampling, generator)
        if len(ends):
            chosen = torch.where(finished, ends[0].expand_as(chosen), chosen)
            finished |= torch.isin(chosen, ends)
        sequences = torch.cat([sequences, chosen[:, None]], dim=1)
        fresh = chosen[:, None] if cache is not None else sequences  # without a cache, the whole sequence again
        yield chosen
        if finished.all():
            return
