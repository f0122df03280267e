"""What a tabular model still fits of the forgotten rows: per row, whether the served label is the
true class (classifiers) or the squared error of the prediction divided by the variance of the
training targets (regressors: 1 is what always predicting the mean would cost on average). A
model retrained without the rows fits them as well as it fits any unseen row."""

from dataclasses import dataclass

from audits.checks import MetricScore, RowAuditSets, mean_score, register
from unlearning.tabular import CLASSIFICATION, row_hits, row_squared_errors


@dataclass(frozen=True)
class RowFitParams:
    pass


def fit_score(model, rows: list[dict], prefix: str, target_variance: float) -> MetricScore:
    if model.task == CLASSIFICATION:
        return mean_score(f"{prefix}_accuracy", row_hits(model, rows))
    return mean_score(f"{prefix}_relative_squared_error",
                      [error / target_variance for error in row_squared_errors(model, rows)])


@register("row_fit", RowFitParams, reads=RowAuditSets)
def run(model, tokenizer, sets: RowAuditSets, params: RowFitParams, context) -> list[MetricScore]:
    return [fit_score(model, sets.forget_rows, "forget_row", sets.target_variance)]
