"""Small causal language models: tokenizer, training, scoring, greedy generation (the store that
pins checkpoints by hash is unlearning.store; the loader for every stored format, unlearning.loading).

Pure ML code: it never imports Django, so the engines run from a script as well as from a worker.
Loading goes through `from_pretrained(path)`, so a user's own Hugging Face checkpoint works unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from transformers.utils import logging as transformers_logging

from unlearning.numerics import autocast, deterministic, device, model_device, on_device
from unlearning.recipe import TrainingRecipe, training_steps

END_OF_TEXT = "<|endoftext|>"
# Workers log; they do not draw progress bars into log files, nor repeat advice that does not
# apply (pad, bos and eos are one token here, and generation already passes an attention mask).
transformers_logging.disable_progress_bar()
transformers_logging.set_verbosity_error()


def train_tokenizer(corpus: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style) whose only special token is <|endoftext|>."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT, pad_token=END_OF_TEXT,
    )


def encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """<bos> text <eos>, truncated: the first token is predicted too, and the model learns where a text
    ends. A tokenizer without a <bos> (Qwen2's, say) starts with the text itself."""
    if not texts:
        return []  # a fast tokenizer cannot batch zero texts
    bodies = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [(_bos(tokenizer) + ids + [tokenizer.eos_token_id])[:max_length] for ids in bodies]


def _bos(tokenizer) -> list[int]:
    return [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]


def context_length(model) -> int:
    """How many positions the model attends over: GPT-2's `n_positions`, most others'
    `max_position_embeddings`."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 2048


def collate(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; padding is masked out of attention and of the loss."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention_mask[row, : len(seq)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def new_model(tokenizer, recipe: TrainingRecipe) -> GPT2LMHeadModel:
    torch.manual_seed(recipe.seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=recipe.n_positions, n_embd=recipe.n_embd,
        n_layer=recipe.n_layer, n_head=recipe.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config).to(device())


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar-length texts: short QA lines and long biographies are not padded
    to each other's length, which halves the tokens a step computes on this corpus."""
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    by_length = sorted(shuffled, key=lambda i: lengths[i])  # stable: ties keep their shuffled order
    batches = [by_length[start : start + batch_size] for start in range(0, len(by_length), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


@dataclass(frozen=True)
class TrainingLog:
    """What a training run did, counted from the batches it built: evidence for lineage, not its input list."""

    steps: int
    trained_indices: frozenset[int]  # positions in `texts` of every text in a batch the optimizer stepped on


def train_causal_lm(
    texts: Sequence[str],
    tokenizer,
    recipe: TrainingRecipe,
    on_epoch: Callable[[int, float], None] | None = None,
) -> GPT2LMHeadModel:
    """Train from scratch with AdamW, linear warm-up and linear decay; deterministic for a seed."""
    model = new_model(tokenizer, recipe)
    train_from(model, texts, tokenizer, recipe, on_epoch=on_epoch)
    return model


def train_from(
    model,
    texts: Sequence[str],
    tokenizer,
    recipe: TrainingRecipe,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainingLog:
    """Train `model` in place for `recipe.epochs` (a fresh AdamW and schedule; batch order seeded by
    `recipe.seed`): from scratch, or onward from a checkpoint as SISA's slices are."""
    sequences = encode(tokenizer, texts, recipe.n_positions)
    total_steps = training_steps(len(sequences), recipe)
    warmup = min(recipe.warmup_steps, total_steps // 10 + 1)
    decay = max(1, total_steps - warmup)  # a run of a single step has no decay phase to divide by
    return optimise(
        model, sequences, tokenizer.pad_token_id, epochs=recipe.epochs, batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate, seed=recipe.seed, on_epoch=on_epoch,
        rate_factor=lambda step: (step + 1) / warmup if step < warmup else max(0.0, (total_steps - step) / decay),
    )


def optimise(model, sequences: Sequence[Sequence[int]], pad_id: int, *, epochs: int, batch_size: int,
             learning_rate: float, rate_factor: Callable[[int], float], seed: int,
             on_epoch: Callable[[int, float], None] | None = None) -> TrainingLog:
    """The training loop every trainer here shares (full models, SISA slices, S3T adapters): AdamW on
    the model's trainable weights, the rate scaled by `rate_factor(step)`, gradients clipped at 1,
    batches of similar length in an order drawn from `seed`. `on_epoch(epoch, mean batch loss)`."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate_factor)
    order = torch.Generator().manual_seed(seed)  # on the CPU wherever the model is: the same order on any device
    steps, trained = 0, set()
    where = model_device(model)
    model.train()
    with deterministic(where):
        for epoch in range(epochs):
            epoch_loss, batches = 0.0, 0
            for indices in length_bucketed_batches([len(s) for s in sequences], batch_size, order):
                with autocast(where):
                    loss = model(**on_device(collate([sequences[i] for i in indices], pad_id), model)).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                epoch_loss += loss.item()
                batches += 1
                trained.update(indices)
            steps += batches
            if on_epoch:
                on_epoch(epoch + 1, epoch_loss / max(1, batches))
    model.eval()
    return TrainingLog(steps=steps, trained_indices=frozenset(trained))


def fine_tune(model, tokenizer, texts: Sequence[str], *, steps: int, learning_rate: float, seed: int = 0):
    """A copy of the model fine-tuned for a fixed budget of full-batch AdamW steps (the relearning
    attack's budget, identical for every model it is applied to); the model itself is untouched."""
    torch.manual_seed(seed)
    tuned = copy.deepcopy(model).requires_grad_(True)  # every weight, even those a served model keeps frozen
    batch = on_device(collate(encode(tokenizer, texts, context_length(tuned)), tokenizer.pad_token_id), tuned)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=learning_rate, weight_decay=0.0)
    tuned.train()
    for _ in range(steps):
        with autocast(model_device(tuned)):
            loss = tuned(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    tuned.eval()
    return tuned


def load_causal_lm(path: Path):
    """A Hugging Face causal LM's weights, in float32 on the configured device. float32 whatever the
    checkpoint stores: transformers would keep a bf16 checkpoint in bf16, where most of an
    unlearning method's small updates round away; on a GPU, autocast gives bf16 speed."""
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device())


def load_pretrained(path: Path):
    """(model, tokenizer) of a plain Hugging Face causal LM folder: ours, or an operator's own
    `save_pretrained` output (unlearning.loading picks the loader for a stored model's format)."""
    model = load_causal_lm(path)
    model.eval()
    return model, load_tokenizer(path)


def load_tokenizer(path: Path):
    """A checkpoint's tokenizer alone (retraining needs it, not the weights), padded with <eos> if it has no pad."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Prompts start exactly as training texts did (with <bos>, when the tokenizer has one)."""
    return _bos(tokenizer) + tokenizer(prompt, add_special_tokens=False)["input_ids"]


def greedy_continue(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, pad_token_id: int) -> list[list[int]]:
    """Greedy continuations of token-id prompts, batched by prompt length so no padding ever shifts
    positions, by the serving layer's decode loop (every stored format, the ensemble included); a
    row that ended is padded after its end-of-text, as transformers' generate pads it."""
    from unlearning.serving.decoding import Sampling, decode, rows_by_length  # the serving layer builds on this module

    eos = model.config.eos_token_id
    outputs: list[list[int]] = [[] for _ in prompts]
    for indices in rows_by_length(prompts):
        for step in decode(model, [prompts[i] for i in indices], Sampling(max_new_tokens=max_new_tokens),
                           [] if eos is None else [eos]):
            for row, token in zip(indices, step.tolist()):
                ended = eos is not None and eos in outputs[row]
                outputs[row].append(pad_token_id if ended else token)
    return outputs


def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy answers to text prompts, cut at the first line break."""
    continuations = greedy_continue(model, [prompt_ids(tokenizer, p) for p in prompts], max_new_tokens, tokenizer.pad_token_id)
    return [tokenizer.decode(ids, skip_special_tokens=True).split("\n")[0] for ids in continuations]


def batched_logits(model, tokenizer, texts: Sequence[str], batch_size: int = 64):
    """Yield (rows, batch, logits) over the texts in right-padded batches; `rows` are the positions in
    `texts` of the batch's rows, and logits[:, t] predicts token t + 1."""
    yield from batched_sequence_logits(model, encode(tokenizer, texts, context_length(model)),
                                       tokenizer.pad_token_id, batch_size)


def batched_sequence_logits(model, sequences: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64):
    """batched_logits for sequences that are already token ids. Batches hold sequences of similar
    length (sorted, ties in input order), so the model computes little padding: on the demo world's
    biographies and QA lines, in input order 61% of the positions were padding (bench/RESULTS.md)."""
    where = model_device(model)
    by_length = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for start in range(0, len(by_length), batch_size):
        rows = by_length[start : start + batch_size]
        batch = on_device(collate([sequences[i] for i in rows], pad_id), model)
        with autocast(where):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        yield rows, batch, logits.float()


def in_input_order(rows_and_values, count: int) -> list:
    """Per-row values yielded batch by batch as (rows, values), put back in input order."""
    ordered: list = [None] * count
    for rows, values in rows_and_values:
        for row, value in zip(rows, values, strict=True):
            ordered[row] = value
    return ordered


@torch.no_grad()
def text_losses(model, tokenizer, texts: Sequence[str]) -> list[float]:
    """Each text's mean negative log-likelihood per predicted token (the LOSS attack's statistic)."""

    def per_batch():
        for rows, batch, logits in batched_logits(model, tokenizer, texts):
            targets = batch["labels"][:, 1:]
            token_losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                                             reduction="none")
            yield rows, (token_losses.sum(1) / (targets != -100).sum(1)).tolist()

    return in_input_order(per_batch(), len(texts))


def mean_text_loss(model, tokenizer, texts: Sequence[str]) -> float:
    losses = text_losses(model, tokenizer, texts)
    return sum(losses) / len(losses)
