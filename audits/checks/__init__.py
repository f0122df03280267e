"""Verification audits, one module each, registered by name.

An audit runs against one model and returns metric scores with their per-item values, so that
verdicts, charts and CSV exports all read the same numbers. Pure ML code: no Django.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AuditSets:
    """F (forget), H (holdout: never trained, same distribution as F) and R (retain) material."""

    forget_texts: list[str]
    holdout_texts: list[str]
    forget_qa: list[tuple[str, str]]
    retain_qa: list[tuple[str, str]]


@dataclass
class MetricScore:
    metric: str
    value: float
    sample_size: int
    per_item: dict[str, list[float]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # further figures of the same scores (e.g. TPR at low FPR)


@dataclass(frozen=True)
class Audit:
    name: str
    params_type: type
    run: Callable[..., list[MetricScore]]


AUDITS: dict[str, Audit] = {}


def register(name: str, params_type: type):
    def decorator(run):
        AUDITS[name] = Audit(name=name, params_type=params_type, run=run)
        return run

    return decorator


def run_suite(model, tokenizer, sets: AuditSets) -> dict[str, MetricScore]:
    """Every registered audit with its default parameters; metric name → score."""
    scores: dict[str, MetricScore] = {}
    for audit in AUDITS.values():
        for score in audit.run(model, tokenizer, sets, audit.params_type()):
            scores[score.metric] = score
    return scores


from audits.checks import knowledge_qa, membership, verbatim  # noqa: E402,F401  (register themselves)
