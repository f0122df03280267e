"""Utility of a tabular model: accuracy (classifiers) or relative squared error (regressors, see
row_fit) on the held-out rows, judged against the original: what the deletion cost everyone else."""

from dataclasses import dataclass

from audits.checks import MetricScore, RowAuditSets, register
from audits.checks.row_fit import fit_score


@dataclass(frozen=True)
class RowUtilityParams:
    pass


@register("row_utility", RowUtilityParams, reads=RowAuditSets)
def run(model, tokenizer, sets: RowAuditSets, params: RowUtilityParams, context) -> list[MetricScore]:
    return [fit_score(model, sets.holdout_rows, "heldout", sets.target_variance)] if sets.holdout_rows else []
