"""Membership inference: can an attacker tell the subject's texts from never-trained texts?

LOSS and Min-K%++ scores from one forward pass; each reported as the AUC of forget vs holdout.
"""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, register
from audits.metrics import loss_score, min_k_plus_plus, roc_auc
from audits.scoring import token_statistics


@dataclass(frozen=True)
class MembershipParams:
    min_k_fraction: float = 0.2


@register("membership_inference", MembershipParams)
def run(model, tokenizer, sets: AuditSets, params: MembershipParams) -> list[MetricScore]:
    forget = token_statistics(model, tokenizer, sets.forget_texts)
    holdout = token_statistics(model, tokenizer, sets.holdout_texts)
    attacks = {
        "mia_loss_auc": lambda s: loss_score(s.logprobs),
        "mia_min_k_pp_auc": lambda s: min_k_plus_plus(s.logprobs, s.mu, s.sigma, params.min_k_fraction),
    }
    scores = []
    for metric, attack in attacks.items():
        members, nonmembers = [attack(s) for s in forget], [attack(s) for s in holdout]
        scores.append(MetricScore(metric, roc_auc(members, nonmembers), len(members),
                                  {"forget": members, "holdout": nonmembers}))
    return scores
