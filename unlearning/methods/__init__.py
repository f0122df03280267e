"""Approximate unlearning methods, one module each, registered by name.

This package's own modules split in two so that the web process can name, describe and validate
methods without torch:

- `unlearning.methods` (this module) and `unlearning.methods.hyperparameters`: the registry, what
  a method is handed and returns, and every method's hyperparameters as a dataclass with its
  published defaults and citation. No torch, no Django: the API and the admin validate an
  operator's choice of method and parameters against these before a job runs.
- `unlearning.methods.<name>` (graddiff, npo, rmu…): the method's objective (torch), run by the
  loop every method shares (`unlearning.methods.guarded`: evaluation each epoch, target and utility
  floor, best checkpoint, LoRA). Workers load it by name (`Method.engine`).
"""

from __future__ import annotations

import importlib
import math
import types
import typing
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class QA:
    question: str  # the prompt as the model is asked it ("Question: …\nAnswer:")
    answer: str


@dataclass(frozen=True)
class UnlearningData:
    forget_texts: list[str]
    retain_texts: list[str]
    # Mean per-text loss of never-trained texts under the starting model: a forget set at this
    # loss looks like data the model never saw, which is where approximate methods should stop.
    target_forget_loss: float | None = None
    # Retained people's questions: the utility floor keeps the model's answers to them.
    retain_qa: list[QA] = field(default_factory=list)


@dataclass(frozen=True)
class RowData:
    """A tabular model's rows (manifest lines: features, target): what it forgets, what it keeps,
    and never-trained rows, whose loss is the target and whose held-out score is the utility floor."""

    forget_rows: list[dict]
    retain_rows: list[dict]
    holdout_rows: list[dict]


@dataclass
class UnlearningOutcome:
    model: object
    steps: int
    stopped_because: str  # one of STOP_REASONS
    history: list[dict] = field(default_factory=list)
    best_step: int = 0  # the evaluated step whose weights were returned
    seconds: float = 0.0
    adapter: bool = False  # LoRA kept as an adapter on the base model, not merged


# Why a guarded run stopped, in words an operator reads on the job.
STOP_REASONS = {
    "reached_target_forget_loss": "the forget set's loss reached that of never-trained data",
    "max_steps": "the step budget was spent before the forget set looked never-trained; the best state within "
                 "the utility floor is returned",
    "utility_floor": "the next step would have crossed the utility floor; the best state within it is returned",
    "best_trial_step": "of the trial steps within the utility floor, the one nearest the target was kept (IAU)",
}


# How much of an approximate job's progress its loop reports (reaching the target reports this
# much); the rest is storing the result, and the job's completion writes 1.
LOOP_SHARE = 0.95


def progress_fraction(history: list[dict], target: float | None, budget_spent: float) -> float:
    """How far an approximate run is, for the owner's status page (0..LOOP_SHARE): the larger of the
    budget spent and the farthest the forget loss has come from its start toward the target, since a
    run stops when it reaches the target, usually far short of its budget. Never below an earlier
    report of the same run: the history only grows, and the budget spent too."""
    start = history[0]["forget_loss"]
    toward = 0.0
    if target is not None and target > start:
        toward = max((point["forget_loss"] - start) / (target - start) for point in history)
    return LOOP_SHARE * min(1.0, max(budget_spent, toward, 0.0))


class UnlearningFailed(Exception):
    """No state within the utility floor forgot anything: the job fails with the history that shows why,
    rather than hand back a collapsed (or unchanged) model."""

    def __init__(self, reason: str, history: list[dict]):
        super().__init__(reason)
        self.history = history


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # what the admin, the API and the deletion plan call it
    kind: str  # "approximate" (suppression) or "exact" (removal)
    model_kinds: frozenset[str]  # unlearning.models.ModelKind values it applies to
    params_type: type
    citation: str

    def params(self, overrides: dict | None = None):
        """The method's defaults with `overrides` applied, each checked against the dataclass's field
        type; an unknown name or a value of the wrong type is an error, never ignored."""
        return parse_params(self.name, self.params_type, overrides or {})

    def engine(self):
        """The method's objective module (torch): loaded by name in a worker, never by the web process."""
        return importlib.import_module(f"unlearning.methods.{self.name}")

    def unlearn(self, model, tokenizer, data: UnlearningData | RowData, params, progress=None,
                original=None) -> UnlearningOutcome:
        """Run the method in its guarded loop (unlearning.methods.guarded for language models,
        unlearning.methods.rows for tabular ones; `original`: the model's first version, which the
        utility floor is measured from); raises UnlearningFailed when no state within the utility
        floor forgot anything."""
        loop = importlib.import_module("unlearning.methods.rows" if isinstance(data, RowData) else
                                       "unlearning.methods.guarded")
        return loop.unlearn(self.engine(), model, tokenizer, data, params, progress, original)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown unlearning method {name!r} (known: {', '.join(sorted(METHODS))})") from None


def methods_for(model_kind: str) -> list[Method]:
    return [method for method in METHODS.values() if model_kind in method.model_kinds]


def parse_params(method: str, params_type: type, overrides: dict):
    known = {f.name for f in fields(params_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameters for {method}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(params_type)
    return params_type(**{name: checked_value(method, name, hints[name], value) for name, value in overrides.items()})


def checked_value(method: str, name: str, hint, value):
    """`value` as the field's type: an int is a valid float, a bool is not a number, a Literal takes its choices."""
    optional = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if isinstance(hint, types.UnionType) and len(optional) == 1:  # `float | None`: unset, or the type
        return None if value is None else checked_value(method, name, optional[0], value)
    if typing.get_origin(hint) is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise ValueError(f"{method}.{name} must be one of {', '.join(map(repr, typing.get_args(hint)))}, not {shown(value)}")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"{method}.{name} must be a finite number, not {shown(value)}")
        return number
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{method}.{name} must be {hint.__name__}, not {shown(value)}")


def shown(value) -> str:
    """A value as an error message quotes it, cut short (an API client may send anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


from unlearning.methods import hyperparameters  # noqa: E402,F401  (registers every method)
