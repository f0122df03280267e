"""ECO: embedding-corrupted prompts (Liu et al. 2024, "Large Language Model Unlearning via
Embedding-Corrupted Prompts", NeurIPS). The weights stay as they are: when the gate flags a prompt
as about a forget target, the prompt's token embeddings are corrupted before the model reads them,
so that the model answers as if it had never met the subject.

- Three corruptions (`CORRUPTIONS`, named by `EcoParams.corruption`): Gaussian noise on the first
  n dimensions, scaled by σ times each token's own RMS so that σ means the same on any model's
  embedding scale ("noise_first_n"); zeroing the k largest-magnitude dimensions of each token
  ("zero_top_k"); flipping their sign ("flip_sign_top_k"). Each maps embeddings to a new tensor,
  so it serves a forward hook here and a vLLM backend's `prompt_embeds` alike.
- Entity tokens: the corruption lands on the tokens that spell a target's name when they can be
  found (`entity_positions`), else on every prompt token but the last, as ECO does; the rest of
  the prompt keeps its meaning, and the question is still answered, just not about the subject.
- Prefill only: a forward hook on the input-embedding modules (`corrupted_prompts`) corrupts a
  call that carries the prompt. A KV-cached decode step feeds one new token, never a prompt token,
  and is left alone; the tokens the model generates are never corrupted.
- Deterministic noise: the ensemble (unlearning.ensemble) has no KV cache and reads the whole
  sequence again at every decode step, so a prompt must get the very same corruption at every
  step, or the answer would be decoded from a different prompt each time. The generator is seeded
  from `EcoParams.seed` for every row at every call, so a prompt's corruption depends neither on
  the step nor on the prompts batched with it.
- Zeroth-order search for σ (`search_strength`): the objective is a measured loss of the true
  answers under the corrupted prompts, a function of one number; a central finite difference
  gives its slope, so no gradient through the model (nor through generation) is needed, and the
  same search works on a model served behind an API that only takes `prompt_embeds`.

Pure ML code: no Django.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from unlearning.lm import context_length, prompt_ids
from unlearning.numerics import autocast, model_device
from unlearning.serving.filters import EcoParams

Corruption = Callable[[torch.Tensor, Sequence[int], EcoParams, float, torch.Generator], torch.Tensor]

# Where the search starts when the filter has no σ yet: noise as large as the embeddings
# themselves; a tenth of the dimensions for the top-k corruptions.
DEFAULT_START = {"noise_first_n": 1.0, "zero_top_k": 0.1, "flip_sign_top_k": 0.1}
# The largest σ the search may reach: a top-k corruption's share of the dimensions is at most all of
# them; noise 16 times a token's own scale has erased it (on the demo model the objective is flat
# from about 8 on, and an uncapped search on a flat objective walked to σ ≈ 1e12).
UPPER = {"noise_first_n": 16.0, "zero_top_k": 1.0, "flip_sign_top_k": 1.0}
# Of the strengths measured within this share of the best objective, the weakest is chosen: as
# good, with less corruption.
NEAR_BEST = 0.05
ANSWER_BATCH = 64


def _corrupt_positions(embeddings: torch.Tensor, positions: Sequence[int],
                       change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """A copy of `embeddings` (..., n, d) whose rows at `positions` are replaced by `change` of them;
    every other value is copied bit for bit."""
    corrupted = embeddings.clone()
    if positions:
        index = torch.as_tensor(list(positions), device=embeddings.device)
        corrupted[..., index, :] = change(embeddings[..., index, :])
    return corrupted


def noise_first_n(embeddings: torch.Tensor, positions: Sequence[int], params: EcoParams, strength: float,
                  generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of scale σ·(each token's RMS) on its first `params.dims` dimensions (all when 0).
    The noise is drawn on the CPU generator: the same corruption on any device."""

    def change(chosen: torch.Tensor) -> torch.Tensor:
        dims = params.dims or chosen.size(-1)
        scale = chosen.float().pow(2).mean(-1, keepdim=True).sqrt()
        noise = torch.randn(chosen[..., :dims].shape, generator=generator).to(chosen.device)
        noisy = chosen.clone()
        noisy[..., :dims] = (chosen[..., :dims].float() + strength * scale * noise).to(chosen.dtype)
        return noisy

    return _corrupt_positions(embeddings, positions, change)


def _top_k(chosen: torch.Tensor, params: EcoParams, strength: float) -> torch.Tensor:
    """Indices of each token's k largest-magnitude dimensions: k = `params.dims` when set, else
    the share `strength` of the dimensions (what the search tunes)."""
    width = chosen.size(-1)
    k = params.dims or round(strength * width)
    return chosen.abs().topk(min(max(k, 0), width), dim=-1).indices


def zero_top_k(embeddings: torch.Tensor, positions: Sequence[int], params: EcoParams, strength: float,
               generator: torch.Generator) -> torch.Tensor:
    """Each chosen token's k largest-magnitude dimensions set to zero (no randomness: `generator` unused)."""
    return _corrupt_positions(embeddings, positions,
                              lambda chosen: chosen.scatter(-1, _top_k(chosen, params, strength), 0.0))


def flip_sign_top_k(embeddings: torch.Tensor, positions: Sequence[int], params: EcoParams, strength: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Each chosen token's k largest-magnitude dimensions negated (no randomness: `generator` unused)."""

    def change(chosen: torch.Tensor) -> torch.Tensor:
        top = _top_k(chosen, params, strength)
        return chosen.scatter(-1, top, -chosen.gather(-1, top))

    return _corrupt_positions(embeddings, positions, change)


CORRUPTIONS: dict[str, Corruption] = {
    "noise_first_n": noise_first_n,
    "zero_top_k": zero_top_k,
    "flip_sign_top_k": flip_sign_top_k,
}


def entity_positions(tokenizer, prompt: str, names: Sequence[str], bos_tokens: int | None = None) -> list[int]:
    """Positions, in `unlearning.lm.prompt_ids(tokenizer, prompt)`, of the tokens that overlap any
    occurrence of any of `names` (whole words, any case); when none occurs, every prompt token but
    the last (ECO's fallback: the subject is in there somewhere, and the last token is where the
    answer starts). `bos_tokens`: how many tokens precede the prompt's own (None: as prompt_ids
    puts them, the tokenizer's <bos> if it has one). Needs a fast tokenizer (offsets)."""
    if bos_tokens is None:
        bos_tokens = len(prompt_ids(tokenizer, ""))
    offsets = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans = [match.span() for name in names if name.strip()
             for match in re.finditer(rf"(?<!\w){re.escape(name.strip())}(?!\w)", prompt, re.IGNORECASE)]
    named = [i for i, (start, end) in enumerate(offsets) if any(start < stop and end > begin for begin, stop in spans)]
    return [bos_tokens + i for i in (named or range(len(offsets) - 1))]


def embedding_modules(model) -> list[torch.nn.Module]:
    """The input-embedding modules a generation goes through: the model's own (a Hugging Face causal
    LM, or a peft model around one), or each member's for an ensemble."""
    members = getattr(model, "members", None)
    if members is not None:
        return [module for member in members for module in embedding_modules(member)]
    return [model.get_input_embeddings()]


@contextmanager
def corrupted_prompts(model, positions_per_row: Sequence[Sequence[int]], params: EcoParams,
                      strength: float) -> Iterator[None]:
    """While open, every forward call that carries the prompts corrupts row r's embeddings at
    `positions_per_row[r]` (positions in the batch's input ids; with left padding, shifted by it).
    Rows with no positions are untouched, bit for bit. The hooks are removed on exit, also on errors."""
    hook = _prefill_hook([list(p) for p in positions_per_row], params, strength)
    handles = [module.register_forward_hook(hook) for module in embedding_modules(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _prefill_hook(rows: list[list[int]], params: EcoParams, strength: float):
    """The forward hook: a call of one token per row is a KV-cached decode step and stays as it is;
    any longer call holds the prompts (the prefill, or the ensemble's recomputation of the whole
    sequence) and is corrupted, every row with its own generator seeded from `params.seed`."""
    corrupt = CORRUPTIONS[params.corruption]

    def hook(module, inputs, output: torch.Tensor):
        length = output.size(-2)
        if length == 1 or not any(rows):
            return None
        if output.size(0) != len(rows):
            raise ValueError(f"ECO was given positions for {len(rows)} prompts, "
                             f"but the model was called on {output.size(0)}")
        if max(max(p) for p in rows if p) >= length:
            raise ValueError(f"an ECO position lies beyond the {length} tokens the model was called on")
        return torch.stack([
            corrupt(output[row], positions, params, strength, torch.Generator().manual_seed(params.seed))
            if positions else output[row]
            for row, positions in enumerate(rows)
        ])

    return hook


@torch.no_grad()
def answer_losses(model, tokenizer, prompts: Sequence[str], answers: Sequence[str],
                  positions: Sequence[Sequence[int]] | None = None, params: EcoParams = EcoParams(),
                  strength: float = 0.0) -> list[float]:
    """Each true answer's mean negative log-likelihood per token (its <eos> included), teacher-forced
    after its prompt (joined by a space, as questions are trained and asked), with the prompts
    corrupted at `positions` (None: not at all). The never-trained people's answers, uncorrupted,
    give the target the search aims for."""
    limit = context_length(model)
    sequences = [_prompt_and_answer(tokenizer, prompt, answer, limit)
                 for prompt, answer in zip(prompts, answers, strict=True)]
    rows = positions if positions is not None else [()] * len(prompts)
    losses: list[float] = []
    for start in range(0, len(sequences), ANSWER_BATCH):
        chunk = range(start, min(start + ANSWER_BATCH, len(sequences)))
        with corrupted_prompts(model, [rows[i] for i in chunk], params, strength):
            losses += _batch_answer_losses(model, [sequences[i] for i in chunk], tokenizer.pad_token_id)
    return losses


def _prompt_and_answer(tokenizer, prompt: str, answer: str, limit: int) -> tuple[list[int], int]:
    """(prompt ids + answer ids + <eos>, how many of them are the prompt's), cut at the context."""
    asked = prompt_ids(tokenizer, prompt)
    answered = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return (asked + answered)[:limit], len(asked)


def _batch_answer_losses(model, sequences: Sequence[tuple[list[int], int]], pad_id: int) -> list[float]:
    """Right-padded, so each prompt keeps the positions its ECO positions were counted in."""
    where = model_device(model)
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (ids, asked) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, asked : len(ids)] = torch.tensor(ids[asked:])
        attention_mask[row, : len(ids)] = 1
    with autocast(where):
        logits = model(input_ids=input_ids.to(where), attention_mask=attention_mask.to(where)).logits[:, :-1].float()
    targets = labels[:, 1:].to(where)
    token_losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                                     reduction="none")
    return (token_losses.sum(1) / (targets != -100).sum(1)).tolist()


def forget_objective(model, tokenizer, prompts: Sequence[str], answers: Sequence[str],
                     positions: Sequence[Sequence[int]], params: EcoParams,
                     target_loss: float) -> Callable[[float], float]:
    """The unlearning objective in σ: the squared distance between the corrupted model's mean answer
    loss on the forget questions and `target_loss`, the loss of answers about people the model never
    saw (the level approximate unlearning stops at, `UnlearningData.target_forget_loss`, here measured
    on answers). Too weak a corruption leaves the answers known; too strong a one makes them less
    likely than a stranger's would be, which is a tell of its own. Deterministic in σ."""

    def distance(strength: float) -> float:
        losses = answer_losses(model, tokenizer, prompts, answers, positions, params, strength)
        return (sum(losses) / len(losses) - target_loss) ** 2

    return distance


def search_strength(objective: Callable[[float], float], start: float, steps: int, *, upper: float = math.inf,
                    probe: float = 0.1, first_move: float = math.log(2),
                    growth: float = 1.5) -> tuple[float, list[tuple[float, float]]]:
    """Zeroth-order search for the σ that minimises `objective`. At each step the slope comes from a
    central finite difference at σ(1 ± probe) (narrower once the moves are smaller), and σ moves
    against it by a factor exp(move). Only the slope's sign is used (a normalised step: the
    objective's scale says nothing about how far σ is from its best); the move grows by `growth`
    while the sign holds and halves when it flips, so σ doubles its way from a poor start and then
    closes in on the best as a bisection would, within about ten steps. Moving by factors keeps σ
    positive; `upper` caps it (a top-k share cannot pass 1). A flat slope (a corruption too weak to
    change anything, or a top-k share within one dimension) keeps the direction, upward at first.
    Returns the weakest σ measured whose objective is within NEAR_BEST of the best, and every
    (σ, objective) measured, in order (two per step)."""
    if start <= 0:
        raise ValueError(f"the search starts from a positive strength, not {start}")
    history: list[tuple[float, float]] = []

    def measure(strength: float) -> float:
        history.append((strength, objective(strength)))
        return history[-1][1]

    strength, move, direction = start, first_move, 0.0
    for _ in range(steps):
        spread = min(probe, move / 2)  # finer as the search closes in, so its measurements close in too
        low, high = strength * (1 - spread), min(upper, strength * (1 + spread))
        slope = (measure(high) - measure(low)) / (high - low)
        turned = -math.copysign(1.0, slope) if slope else direction or 1.0
        if direction:  # the first step has no direction to keep or turn from
            move *= growth if turned == direction else 0.5
        direction = turned
        strength = min(upper, strength * math.exp(direction * move))
    best = min(objective_value for _, objective_value in history)
    return min(strength for strength, value in history if value <= best + NEAR_BEST * abs(best)), history


def tune_strength(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], names: Sequence[str],
                  target_loss: float, params: EcoParams = EcoParams()) -> tuple[float, list[tuple[float, float]]]:
    """σ for a served version's filter: the forget questions' prompts (as the model is asked them) and
    true answers, the targets' names (for the entity tokens), and the never-trained answers' loss
    (`answer_losses` of never-trained people's questions, uncorrupted). Starts from the filter's
    current σ when it has one. Returns σ and the search's history."""
    if params.corruption != "noise_first_n" and params.dims:
        raise ValueError(f"{params.corruption} with a fixed k (dims={params.dims}) has no strength to tune")
    positions = [entity_positions(tokenizer, prompt, names) for prompt in prompts]
    objective = forget_objective(model, tokenizer, prompts, answers, positions, params, target_loss)
    return search_strength(objective, params.strength or DEFAULT_START[params.corruption], params.search_steps,
                           upper=UPPER[params.corruption])
