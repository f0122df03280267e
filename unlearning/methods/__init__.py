"""Unlearning methods, one module each, registered by name.

A method takes a model, the forget and retain texts and its hyperparameters (a dataclass with
published defaults) and returns the unlearned model with a record of what it did. Methods are
pure ML code: no Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class UnlearningData:
    forget_texts: list[str]
    retain_texts: list[str]
    # Mean per-text loss of never-trained texts under the starting model: a forget set at this
    # loss looks like data the model never saw, which is where approximate methods should stop.
    target_forget_loss: float | None = None


@dataclass
class UnlearningOutcome:
    model: object
    steps: int
    stopped_because: str
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "approximate" (suppression) or "exact" (removal)
    params_type: type
    unlearn: Callable[..., UnlearningOutcome]

    def params(self, overrides: dict | None = None):
        """The method's defaults with `overrides` applied; unknown names are an error, not ignored."""
        overrides = overrides or {}
        known = {f.name for f in fields(self.params_type)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown parameters for {self.name}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return self.params_type(**overrides)


METHODS: dict[str, Method] = {}


def register(name: str, kind: str, params_type: type):
    def decorator(unlearn):
        METHODS[name] = Method(name=name, kind=kind, params_type=params_type, unlearn=unlearn)
        return unlearn

    return decorator


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown unlearning method {name!r} (known: {', '.join(sorted(METHODS))})") from None


from unlearning.methods import graddiff  # noqa: E402,F401  (registers itself)
