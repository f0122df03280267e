"""Membership inference on a tabular model: can an attacker tell the forgotten rows from rows the
model never trained on (the held-out split)?

Two attacks on the ensemble's scores, each reported as the AUC of forget vs holdout rows with TPR
at low false-positive rates: LOSS (the soft vote's loss on the true target, lower = member; Yeom
et al. 2018) and, for classifiers, confidence (the soft vote's top probability, which needs no
label; Salem et al. 2019).
"""

from dataclasses import dataclass

from audits.checks import MetricScore, RowAuditSets, register
from audits.checks.membership import auc_score
from unlearning.tabular import CLASSIFICATION, row_confidences, row_losses


@dataclass(frozen=True)
class RowMembershipParams:
    low_false_positive_rates: tuple[float, ...] = (0.01, 0.001)


@register("row_membership", RowMembershipParams, reads=RowAuditSets)
def run(model, tokenizer, sets: RowAuditSets, params: RowMembershipParams, context) -> list[MetricScore]:
    sides = {"forget": sets.forget_rows, "holdout": sets.holdout_rows}
    if not all(sides.values()):
        return []  # an AUC needs members and non-members
    scores = [auc_score("row_mia_loss_auc", {side: [-loss for loss in row_losses(model, rows)]
                                             for side, rows in sides.items()}, params)]
    if model.task == CLASSIFICATION:
        scores.append(auc_score("row_mia_confidence_auc", {side: row_confidences(model, rows)
                                                           for side, rows in sides.items()}, params))
    return scores
