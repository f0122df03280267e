"""GradDiff: gradient ascent on the forget set, gradient descent on the retain set.

loss = -γ · NLL(forget) + α · NLL(retain)   (γ = 1 and α = 5 by default; TOFU's baselines use α = 1)

Plain gradient ascent is unbounded and collapses a model if left running, so the loop evaluates
every few steps and stops when the forget texts' mean per-text loss reaches that of never-trained texts
(`UnlearningData.target_forget_loss`); if the retain loss rises past the utility floor it rolls
back to the last state above the floor. The best state, not the last, is what is returned.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch

from unlearning.lm import collate, context_length, encode, mean_text_loss
from unlearning.methods import UnlearningData, UnlearningOutcome, register
from unlearning.numerics import autocast, model_device, on_device


@dataclass(frozen=True)
class GradDiffParams:
    learning_rate: float = 1e-4
    max_steps: int = 300
    batch_size: int = 32
    forget_weight: float = 1.0  # γ
    # α: weighted up from TOFU's 1 because one data subject's texts share their templates with
    # everyone else's (bench/RESULTS.md, "GradDiff's retain weight").
    retain_weight: float = 5.0
    eval_every: int = 5
    # Largest allowed rise of the retain loss, relative to the starting model (utility floor).
    max_retain_loss_increase: float = 0.25
    # Retain texts used to measure the utility floor (a fixed sample, for speed).
    retain_eval_size: int = 128
    seed: int = 0


@register("graddiff", kind="approximate", params_type=GradDiffParams)
def unlearn(model, tokenizer, data: UnlearningData, params: GradDiffParams, progress=None) -> UnlearningOutcome:
    rng = random.Random(params.seed)
    torch.manual_seed(params.seed)
    max_length = context_length(model)
    forget = encode(tokenizer, data.forget_texts, max_length)
    retain = encode(tokenizer, data.retain_texts, max_length)
    retain_eval = rng.sample(data.retain_texts, min(params.retain_eval_size, len(data.retain_texts)))

    def evaluate(step: int) -> dict:
        model.eval()
        point = {
            "step": step,
            "forget_loss": mean_text_loss(model, tokenizer, data.forget_texts),
            "retain_loss": mean_text_loss(model, tokenizer, retain_eval),
        }
        model.train()
        return point

    history = [evaluate(0)]
    # The utility floor, as a retain loss: above it, the model lost more utility than allowed.
    floor_retain_loss = history[0]["retain_loss"] * (1 + params.max_retain_loss_increase)
    best_state = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.learning_rate, weight_decay=0.0)
    stopped_because = "max_steps"
    model.train()
    for step in range(1, params.max_steps + 1):
        forget_batch = on_device(collate(rng.sample(forget, min(params.batch_size, len(forget))), tokenizer.pad_token_id),
                                 model)
        retain_batch = on_device(collate(rng.sample(retain, min(params.batch_size, len(retain))), tokenizer.pad_token_id),
                                 model)
        with autocast(model_device(model)):
            loss = -params.forget_weight * model(**forget_batch).loss + params.retain_weight * model(**retain_batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % params.eval_every and step != params.max_steps:
            continue
        point = evaluate(step)
        history.append(point)
        if progress:
            progress(step / params.max_steps, f"step {step}: forget loss {point['forget_loss']:.3f}")
        if point["retain_loss"] > floor_retain_loss:
            stopped_because = "utility_floor"  # keep best_state: the last state above the floor
            break
        best_state = copy.deepcopy(model.state_dict())
        if data.target_forget_loss is not None and point["forget_loss"] >= data.target_forget_loss:
            stopped_because = "reached_target_forget_loss"
            break
    model.load_state_dict(best_state)
    model.eval()
    return UnlearningOutcome(model=model, steps=history[-1]["step"], stopped_because=stopped_because, history=history)
