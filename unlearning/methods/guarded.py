"""The loop every language-model method runs in: the method supplies an objective, the loop does
the rest the same way for all of them.

- **Measures** every `eval_every_steps` steps and at the end of every longer epoch: the forget
  texts' mean loss, the retained texts' loss and the retained people's QA accuracy.
- **Stops** when the forget set's loss reaches that of never-trained data (the target), when the
  utility floor would be crossed, or when the step budget is spent.
- **Returns the best state**: of the evaluated states within the floor, the one whose forget loss
  is nearest the target (the last before it, or the first past it), else the highest. If none forgot anything, the run fails with
  its history (`UnlearningFailed`) instead of handing back a collapsed or unchanged model: the
  failure open-unlearning's users meet as GradAscent driving model utility to 0.0.
- **LoRA** (peft) on any architecture: adapters on the decoder's linear layers (Conv1D for GPT-2),
  merged into the result, or kept as an adapter when asked. No gradient checkpointing, so the
  adapters' B matrices train (open-unlearning #178 saw them stay at zero with it).

An objective module (unlearning.methods.<name>) provides `objective`, its subclass of `Objective`, `needs_reference(params)` (whether the original model's predictions are
part of its loss) and, optionally, `trainable(model, params)` (the parameters it updates; default all) and
`lora_targets(model, params)` (module names; default every linear layer of the decoder).
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers.pytorch_utils import Conv1D

from unlearning.lm import collate, context_length, encode, greedy_generate, mean_text_loss
from unlearning.methods import UnlearningData, UnlearningFailed, UnlearningOutcome, progress_fraction
from unlearning.methods.hyperparameters import GuardedLoopParams
from unlearning.numerics import autocast, model_device, on_device
from unlearning.s3t_lm import peft_quietly
from unlearning.world import answer_is_correct

Progress = Callable[[float, str, list[dict]], None]  # fraction done, what it is doing, the history so far


class Reference:
    """The model as it was before unlearning, for objectives that compare with it: with LoRA, the
    same model with its adapters switched off (no copy); else a frozen copy made at the start."""

    def __init__(self, model, *, lora: bool, needed: bool):
        self.lora = lora
        self.frozen = None if lora or not needed else copy.deepcopy(model).requires_grad_(False).eval()

    @contextmanager
    def model(self, trained) -> Iterator:
        if self.lora:
            with trained.disable_adapter(), torch.no_grad():
                yield trained
        else:
            with torch.no_grad():
                yield self.frozen


class Objective:
    """A method's loss on one step's batches; each method module subclasses it as `objective`."""

    def __init__(self, model, tokenizer, params, reference: Reference):
        self.model, self.tokenizer, self.params, self.reference = model, tokenizer, params, reference

    def loss(self, forget: Sequence[str], retain: Sequence[str]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss on a batch of forget texts and one of retained texts, with its parts (for the history)."""
        raise NotImplementedError

    def close(self) -> None:
        """Undo what the objective attached to the model (RMU's hooks)."""


def text_batch(model, tokenizer, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Texts encoded as training encodes them, right-padded, on the model's device."""
    return on_device(collate(encode(tokenizer, texts, context_length(model)), tokenizer.pad_token_id), model)


def sequence_log_likelihoods(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-likelihood of its labelled tokens, and how many there are."""
    targets = labels[:, 1:]
    mask = targets != -100
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(1), mask.sum(1)


def log_likelihoods(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """sequence_log_likelihoods of `model`'s predictions for a batch."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return sequence_log_likelihoods(logits, batch["labels"])


def nll(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """The mean next-token NLL of a batch of texts (the training loss)."""
    return model(**text_batch(model, tokenizer, texts)).loss


def retain_nll(model, tokenizer, texts: Sequence[str], weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """α·NLL(retain), the term most methods add to keep what the model should keep (none at α = 0)."""
    if not weight:
        return torch.zeros((), device=model_device(model)), {}
    loss = nll(model, tokenizer, texts)
    return weight * loss, {"retain_nll": loss.item()}


def unlearn(engine, model, tokenizer, data: UnlearningData, params: GuardedLoopParams,
            progress: Progress | None = None, original=None) -> UnlearningOutcome:
    """Run the method whose objective module is `engine` on `model`, which it changes in place (merged
    LoRA too); on a failure, of any kind, `model` is handed back as it was.
    `original`: the first version of the model, when `model` is a later one. The utility floor is
    measured from it, not from `model`: measured from each job's own start, every request of a
    sequence may spend the whole allowance again (the benchmark's eight sequential requests of
    gradient ascent kept 30% of the original's retained QA so)."""
    started = time.perf_counter()
    torch.manual_seed(params.seed)
    rng = random.Random(params.seed)
    if isinstance(model, PeftModel):  # a version kept as an adapter: its adapter is part of what is unlearned
        model = merged(model)
    measures = Measures(tokenizer, data, params, rng)
    history = [measures(model, step=0, epoch=0)]
    # Measured, then let go: a model's first version is not held through the whole run.
    floor = UtilityFloor(history[0] if original is None else measures(original.eval(), step=0, epoch=0), params)
    del original
    if floor.crossed(history[0]):
        raise UnlearningFailed(failure_reason(history, floor, "utility_floor"), history)
    grads = {name: weight.requires_grad for name, weight in model.named_parameters()}
    trained = with_lora(engine, model, params) if params.lora_rank else model
    objective = engine.objective(trained, tokenizer, params,
                                 Reference(trained, lora=bool(params.lora_rank), needed=engine.needs_reference(params)))
    weights = trainable_parameters(engine, trained, params)
    start = snapshot(weights)
    try:
        best_step, best_weights, stopped_because = train(objective, trained, weights, start, measures, history, floor,
                                                         data, params, rng, progress)
        restore(weights, best_weights)
    except BaseException:
        restore(weights, start)  # whatever went wrong, the model is handed back as it was
        if params.lora_rank:
            trained.unload()
        raise
    finally:
        objective.close()
        trained.eval()
        for name, weight in model.named_parameters():
            weight.requires_grad_(grads.get(name, True))
    if best_step == 0:
        if params.lora_rank:
            trained.unload()
        raise UnlearningFailed(failure_reason(history, floor, stopped_because), history)
    result = trained if params.keep_adapter or not params.lora_rank else merged(trained)
    return UnlearningOutcome(model=result, steps=history[-1]["step"], stopped_because=stopped_because,
                             history=history, best_step=best_step, seconds=time.perf_counter() - started,
                             adapter=params.keep_adapter)


def closer(point: dict, best: dict, target: float | None) -> bool:
    """Whether `point` is a better state than `best`: against the model as it was (step 0), any state
    that raised the forget loss; between such states, the one nearer the target (past it is
    over-unlearning, which the audits catch as surely as under-unlearning), or the higher without one."""
    if best["step"] == 0 or target is None:
        return point["forget_loss"] > best["forget_loss"]
    return abs(point["forget_loss"] - target) < abs(best["forget_loss"] - target)


def evaluated_at(step: int, steps_per_epoch: int, params: GuardedLoopParams) -> bool:
    """Each of the first `eval_every_steps` steps, then every `eval_every_steps` steps, at the end of
    every epoch longer than that, and at the last step. An epoch of one person's texts is one batch:
    evaluating it every step made a one-person GradDiff job five times slower (measured on the tests'
    tiny world) for a stop at most four steps sooner. The first steps are each evaluated so that a
    rate that crosses the floor at once still leaves the states before it to choose from."""
    epoch_end = step % steps_per_epoch == 0 and steps_per_epoch > params.eval_every_steps
    return step <= params.eval_every_steps or step % params.eval_every_steps == 0 or epoch_end \
        or step == params.max_steps


def train(objective: Objective, trained, weights, start: dict[str, torch.Tensor], measures: Measures,
          history: list[dict], floor: UtilityFloor, data: UnlearningData, params: GuardedLoopParams,
          rng: random.Random, progress: Progress | None):
    """The steps, with an evaluation where `evaluated_at` says: (the best step, its weights, why it
    stopped). `start`: the weights as they were, the best until a step beats them."""
    best_step, best_weights = 0, start
    optimizer = torch.optim.AdamW([w for _, w in weights], lr=params.effective_learning_rate, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(data.forget_texts) / params.batch_size)
    batches = forget_batches(data.forget_texts, params.batch_size, rng)
    trained.train()
    for step in range(1, params.max_steps + 1):
        forget = next(batches)
        retain = rng.sample(data.retain_texts, min(params.batch_size, len(data.retain_texts)))
        with autocast(model_device(trained)):
            loss, parts = objective.loss(forget, retain)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w for _, w in weights], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if not evaluated_at(step, steps_per_epoch, params):
            continue
        trained.eval()
        point = {**measures(trained, step=step, epoch=math.ceil(step / steps_per_epoch)), "loss": loss.item(), **parts}
        trained.train()
        history.append(point)
        if progress:
            progress(advance(history, data.target_forget_loss, params), describe(point, data, floor), history)
        if floor.crossed(point):
            return best_step, best_weights, "utility_floor"
        if closer(point, history_point(history, best_step), data.target_forget_loss):
            best_step, best_weights = step, snapshot(weights)
        if data.target_forget_loss is not None and point["forget_loss"] >= data.target_forget_loss:
            return best_step, best_weights, "reached_target_forget_loss"
    return best_step, best_weights, "max_steps"


def forget_batches(texts: Sequence[str], batch_size: int, rng: random.Random) -> Iterator[list[str]]:
    """Epoch after epoch over the forget texts, reshuffled each time."""
    while True:
        order = list(texts)
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


class Measures:
    """What each evaluation records: forget loss, retained-text loss, retained QA accuracy."""

    def __init__(self, tokenizer, data: UnlearningData, params: GuardedLoopParams, rng: random.Random):
        self.tokenizer, self.forget = tokenizer, data.forget_texts
        self.retain = rng.sample(data.retain_texts, min(params.retain_eval_size, len(data.retain_texts)))
        self.qa = data.retain_qa[:: max(1, len(data.retain_qa) // params.retain_qa_eval_size)][: params.retain_qa_eval_size]
        self.answer_tokens = max((len(tokenizer(qa.answer)["input_ids"]) for qa in self.qa), default=0) + 2

    def __call__(self, model, *, step: int, epoch: int) -> dict:
        point = {"step": step, "epoch": epoch, "forget_loss": mean_text_loss(model, self.tokenizer, self.forget),
                 "retain_loss": mean_text_loss(model, self.tokenizer, self.retain)}
        if self.qa:
            answers = greedy_generate(model, self.tokenizer, [qa.question for qa in self.qa], self.answer_tokens)
            point["retained_qa"] = sum(answer_is_correct(a, qa.answer) for a, qa in zip(answers, self.qa)) / len(self.qa)
        return point


class UtilityFloor:
    def __init__(self, start: dict, params: GuardedLoopParams):
        self.retain_loss = start["retain_loss"] * (1 + params.max_retain_loss_increase)
        self.retained_qa = start["retained_qa"] - params.max_retained_qa_drop if "retained_qa" in start else None

    def crossed(self, point: dict) -> bool:
        return point["retain_loss"] > self.retain_loss or (
            self.retained_qa is not None and point["retained_qa"] < self.retained_qa)

    def describe(self) -> str:
        qa = f", retained QA at least {self.retained_qa:.0%}" if self.retained_qa is not None else ""
        return f"retained-text loss at most {self.retain_loss:.3f}{qa}"


def history_point(history: list[dict], step: int) -> dict:
    return next(point for point in history if point["step"] == step)


def advance(history: list[dict], target: float | None, params: GuardedLoopParams) -> float:
    """How far along the job is (unlearning.methods.progress_fraction): the forget loss's way from its
    start to the target, or the step budget spent, whichever is further."""
    return progress_fraction(history, target, history[-1]["step"] / params.max_steps)


def describe(point: dict, data: UnlearningData, floor: UtilityFloor) -> str:
    target = f" (target {data.target_forget_loss:.2f})" if data.target_forget_loss is not None else ""
    qa = f", retained QA {point['retained_qa']:.0%}" if "retained_qa" in point else ""
    return (f"epoch {point['epoch']}, step {point['step']}: forget loss {point['forget_loss']:.2f}{target}, "
            f"retained loss {point['retain_loss']:.2f} (floor {floor.retain_loss:.2f}){qa}")


def failure_reason(history: list[dict], floor: UtilityFloor, stopped_because: str) -> str:
    start, last = history[0], history[-1]
    if floor.crossed(start):
        why = (f"the model it started from is already past the utility floor measured from the original "
               f"({floor.describe()}: retained-text loss {start['retain_loss']:.3f}"
               + (f", retained QA {start['retained_qa']:.0%}" if "retained_qa" in start else "")
               + "); earlier unlearning spent the allowance, and retraining is what is left")
    elif stopped_because == "utility_floor" and len(history) == 2:
        why = (f"its first evaluation (step {last['step']}) already crossed the utility floor ({floor.describe()}: "
               f"retained-text loss {last['retain_loss']:.3f}"
               + (f", retained QA {last['retained_qa']:.0%}" if "retained_qa" in last else "") + ")")
    elif stopped_because == "utility_floor":
        why = f"it crossed the utility floor ({floor.describe()}) at step {last['step']} before raising the forget loss"
    else:
        why = f"the forget loss never rose above its start ({start['forget_loss']:.3f}) in {last['step']} steps"
    return (f"no state within the utility floor forgot anything: {why}. The model is unchanged; a lower learning "
            f"rate or a larger retain weight may help.")


def snapshot(weights: list[tuple[str, torch.nn.Parameter]]) -> dict[str, torch.Tensor]:
    return {name: weight.detach().clone() for name, weight in weights}


def restore(weights: list[tuple[str, torch.nn.Parameter]], saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, weight in weights:
            weight.copy_(saved[name])


def trainable_parameters(engine, model, params) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters the method updates (all, a method's chosen few, or the LoRA adapters); every
    other one is frozen, so no gradient is computed for it."""
    if params.lora_rank:
        chosen = {name for name, weight in model.named_parameters() if "lora_" in name}
    elif hasattr(engine, "trainable"):
        chosen = set(engine.trainable(model, params))
    else:
        chosen = {name for name, _ in model.named_parameters()}
    for name, weight in model.named_parameters():
        weight.requires_grad_(name in chosen)
    return [(name, weight) for name, weight in model.named_parameters() if name in chosen]


def decoder_blocks(model) -> tuple[str, torch.nn.ModuleList]:
    """The model's stack of decoder blocks, found by shape rather than name (GPT-2's `transformer.h`,
    Llama's and Qwen's `model.layers`…): the longest ModuleList in it."""
    lists = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no stack of decoder blocks (no ModuleList) to unlearn in")
    return max(lists, key=lambda item: len(item[1]))


def linear_layer_names(model, within: Sequence[str] = ()) -> list[str]:
    """Every linear layer (torch Linear or GPT-2's Conv1D) inside the decoder blocks, or inside the
    given modules: the embeddings and the output head stay as they are."""
    prefix, _ = decoder_blocks(model)
    scopes = tuple(within) or (prefix + ".",)
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear | Conv1D) and name.startswith(scopes)]


def with_lora(engine, model, params: GuardedLoopParams):
    """`model` with LoRA adapters where the method wants them (default: every linear layer of the
    decoder). A regular expression of exact names rather than a list: peft keeps a list as a set,
    whose order in adapter_config.json would change the adapter's content address."""
    names = engine.lora_targets(model, params) if hasattr(engine, "lora_targets") else linear_layer_names(model)
    conv1d = any(isinstance(model.get_submodule(name), Conv1D) for name in names)
    with peft_quietly():
        return get_peft_model(model, LoraConfig(
            r=params.lora_rank, lora_alpha=params.lora_alpha, lora_dropout=0.0, fan_in_fan_out=conv1d,
            target_modules="^(" + "|".join(re.escape(name) for name in sorted(names)) + ")$",
        ))


def merged(model):
    with peft_quietly():
        return model.merge_and_unload()
