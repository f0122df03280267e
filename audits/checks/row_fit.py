"""What a tabular model still fits of the forgotten rows: per row, whether the served label is the
true class (classifiers) or the squared error of the prediction in standardised units
(regressors). A model retrained without the rows fits them as well as it fits any unseen row."""

from dataclasses import dataclass

from audits.checks import MetricScore, RowAuditSets, mean_score, register
from unlearning.tabular import CLASSIFICATION, row_hits, row_squared_errors


@dataclass(frozen=True)
class RowFitParams:
    pass


def fit_score(model, rows: list[dict], prefix: str) -> MetricScore:
    if model.task == CLASSIFICATION:
        return mean_score(f"{prefix}_accuracy", row_hits(model, rows))
    return mean_score(f"{prefix}_squared_error", row_squared_errors(model, rows))


@register("row_fit", RowFitParams, reads=RowAuditSets)
def run(model, tokenizer, sets: RowAuditSets, params: RowFitParams, context) -> list[MetricScore]:
    return [fit_score(model, sets.forget_rows, "forget_row")]
