"""The loop every tabular method runs in (a plain MLP classifier or regressor): the method yields
candidate states (after each epoch, or each trial step), the loop measures each and decides.

- **Measures**: the forgotten rows' mean loss, the retained rows' loss, and the held-out score
  (accuracy, or squared error over the target variance) on never-trained rows.
- **Stops** when the forgotten rows' loss reaches the never-trained rows' (the target), or when a
  state crosses the utility floor (measured from the original); a method whose candidates each start
  from the same weights (IAU's step sizes) is not stopped by a crossing: the next candidate is tried.
- **Returns the best state within the floor** (forget loss nearest the target), else fails with the history.

An engine module (unlearning.methods.<name>) provides `candidates(model, data, params, loss) ->
Iterator[str]` (changing `model` in place, yielding what each state is) and may set
`INDEPENDENT_CANDIDATES = True` and `budget(params)` (how many candidates at most; default the
epochs).
"""

from __future__ import annotations

import copy
import time

import torch

from unlearning.methods import RowData, UnlearningFailed, UnlearningOutcome, progress_fraction
from unlearning.methods.guarded import closer, history_point
from unlearning.methods.hyperparameters import RowLoopParams
from unlearning.tabular import CLASSIFICATION, TabularEnsemble


class RowLoss:
    """The task's loss on rows (cross-entropy or squared error), per row or averaged."""

    def __init__(self, task: str):
        self.task = task

    def features(self, rows) -> torch.Tensor:
        return torch.tensor([r["features"] for r in rows], dtype=torch.float32).reshape(len(rows), -1)

    def targets(self, rows) -> torch.Tensor:
        return torch.tensor([r["target"] for r in rows], dtype=torch.long if self.task == CLASSIFICATION else torch.float32)

    def of(self, outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.task == CLASSIFICATION:
            return torch.nn.functional.cross_entropy(outputs, targets, reduction=reduction)
        return torch.nn.functional.mse_loss(outputs.squeeze(-1), targets, reduction=reduction)

    def on(self, model, rows, reduction: str = "mean") -> torch.Tensor:
        return self.of(model(self.features(rows)), self.targets(rows), reduction)


class Measures:
    def __init__(self, data: RowData, loss: RowLoss):
        self.data, self.loss = data, loss
        targets = loss.targets(data.retain_rows + data.forget_rows).float()
        self.variance = float(targets.var()) if loss.task != CLASSIFICATION else 1.0

    @torch.no_grad()
    def __call__(self, model, step: int, what: str) -> dict:
        data, loss = self.data, self.loss
        model.eval()
        outputs = model(loss.features(data.holdout_rows))
        truth = loss.targets(data.holdout_rows)
        point = {"step": step, "what": what, "forget_loss": loss.on(model, data.forget_rows).item(),
                 "retain_loss": loss.on(model, data.retain_rows).item(), "holdout_loss": loss.of(outputs, truth).item()}
        if loss.task == CLASSIFICATION:
            point["heldout_accuracy"] = (outputs.argmax(-1) == truth).float().mean().item()
        else:
            point["heldout_relative_error"] = ((outputs.squeeze(-1) - truth) ** 2).mean().item() / self.variance
        return point


class UtilityFloor:
    def __init__(self, start: dict, params: RowLoopParams):
        self.accuracy = start["heldout_accuracy"] - params.max_heldout_accuracy_drop if "heldout_accuracy" in start else None
        self.error = (start["heldout_relative_error"] + params.max_heldout_error_rise
                      if "heldout_relative_error" in start else None)

    def crossed(self, point: dict) -> bool:
        if self.accuracy is not None:
            return point["heldout_accuracy"] < self.accuracy
        return point["heldout_relative_error"] > self.error

    def describe(self) -> str:
        if self.accuracy is not None:
            return f"held-out accuracy at least {self.accuracy:.1%}"
        return f"held-out squared error at most {self.error:.3f} of the target variance"


def only_member(model: TabularEnsemble) -> torch.nn.Module:
    if len(model.members) != 1:
        raise ValueError(f"approximate methods apply to a plain MLP, not to an ensemble of {len(model.members)} "
                         "shards (a SISA model's rows leave it by shard retraining)")
    return model.members[0]


def unlearn(engine, model, tokenizer, data: RowData, params: RowLoopParams, progress=None,
            original=None) -> UnlearningOutcome:
    """Run the tabular method `engine` on `model` (a plain MLP served as an ensemble of one), changed in
    place; on a failure, of any kind, handed back as it was."""
    started = time.perf_counter()
    torch.manual_seed(params.seed)
    network = only_member(model)
    loss = RowLoss(model.task)
    measures = Measures(data, loss)
    history = [measures(network, 0, "the model as it was")]
    floor = UtilityFloor(history[0] if original is None else measures(only_member(original), 0, "original"), params)
    target = history[0]["holdout_loss"]
    start = copy.deepcopy(network.state_dict())
    best_step, best, stopped_because = 0, start, "max_steps"
    try:
        if not floor.crossed(history[0]):
            best_step, best, stopped_because = search(engine, network, data, params, loss, measures, history, floor,
                                                      target, progress)
    finally:
        network.load_state_dict(best)  # the best state; on any error, the model as it was
        network.eval()
    if best_step == 0:
        raise UnlearningFailed(failure_reason(history, floor), history)
    return UnlearningOutcome(model=model, steps=history[-1]["step"], stopped_because=stopped_because, history=history,
                             best_step=best_step, seconds=time.perf_counter() - started)


def search(engine, network, data, params, loss, measures, history, floor, target, progress):
    """Measure each state the method proposes: (the best step, its weights, why it stopped). A method
    whose candidates each start from the same weights (IAU's step sizes) has every one measured, and
    a crossing of the floor rules out that candidate only."""
    independent = getattr(engine, "INDEPENDENT_CANDIDATES", False)
    budget = engine.budget(params) if hasattr(engine, "budget") else params.max_epochs
    best_step, best = 0, copy.deepcopy(network.state_dict())
    for step, what in enumerate(engine.candidates(network, data, params, loss), start=1):
        point = measures(network, step, what)
        history.append(point)
        if progress:
            # Independent candidates each start from the same weights: their losses are no way travelled.
            progress(progress_fraction(history, None if independent else target, step / budget),
                     f"{what}: forgotten rows' loss {point['forget_loss']:.3f} (target {target:.3f})",
                     history)
        if floor.crossed(point):
            if independent:
                continue
            return best_step, best, "utility_floor"
        if closer(point, history_point(history, best_step), target):
            best_step, best = step, copy.deepcopy(network.state_dict())
        if point["forget_loss"] >= target and not independent:
            return best_step, best, "reached_target_forget_loss"
    return best_step, best, "best_trial_step" if independent else "max_steps"


def failure_reason(history: list[dict], floor: UtilityFloor) -> str:
    if floor.crossed(history[0]):
        why = f"the model it started from is already past the utility floor measured from the original ({floor.describe()})"
    elif len(history) == 1:
        why = "the method proposed no state to measure"
    elif all(floor.crossed(point) for point in history[1:]):
        why = f"every state it reached crossed the utility floor ({floor.describe()})"
    else:
        why = f"the forgotten rows' loss never rose above its start ({history[0]['forget_loss']:.3f})"
    return f"no state within the utility floor forgot anything: {why}. The model is unchanged."


def batches(rows: list[dict], size: int, generator: torch.Generator) -> list[list[dict]]:
    """The rows in shuffled mini-batches (an epoch)."""
    order = torch.randperm(len(rows), generator=generator).tolist()
    return [[rows[i] for i in order[start : start + size]] for start in range(0, len(rows), size)]


def extractor(network: torch.nn.Sequential) -> torch.nn.Sequential:
    """Everything but the output layer: what turns a row into its representation."""
    return network[:-1]
