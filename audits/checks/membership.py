"""Membership inference: can an attacker tell the subject's texts from never-trained texts?

One forward pass per text gives every score (the lowercase attack adds one pass over the
lowercased texts). Each attack is reported as the AUC of forget vs holdout, with TPR at low
false-positive rates (Clopper-Pearson intervals) and the share of forget texts beyond the
holdout's 99th percentile.

The reference-calibrated attack scores loss(reference) − loss(model) per text: what this model
knows about a text beyond what a model retrained without the subject knows. It needs the
reference's scores (SuiteContext); on the reference itself every score is 0 (AUC 0.5 by
construction), and without a reference it is not reported.
"""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, SuiteContext, rank_score, register
from audits.metrics import (
    clopper_pearson,
    loss_score,
    lowercase_score,
    min_k_percent,
    min_k_plus_plus,
    roc_auc,
    share_beyond_percentile,
    tpr_at_fpr,
    zlib_score,
)
from audits.persons import PERSON_METRIC, PERSON_RANK_METRIC, family_p_values, person_level
from audits.scoring import token_statistics


@dataclass(frozen=True)
class MembershipParams:
    min_k_fractions: tuple[float, ...] = (0.2, 0.4)
    min_k_plus_plus_fraction: float = 0.2
    low_false_positive_rates: tuple[float, ...] = (0.01, 0.001)
    reference_calibrated: bool = True


def attacks(params: MembershipParams) -> dict:
    """metric name → score(statistics, text, lowercase statistics); higher means "member"."""
    panel = {
        "mia_loss_auc": lambda s, text, lower: loss_score(s.logprobs),
        "mia_zlib_auc": lambda s, text, lower: zlib_score(s.logprobs, text),
        "mia_lowercase_auc": lambda s, text, lower: lowercase_score(s.logprobs, lower.logprobs),
    }
    for k in params.min_k_fractions:
        panel[f"mia_min_k_{round(k * 100)}_auc"] = lambda s, text, lower, k=k: min_k_percent(s.logprobs, k)
    panel["mia_min_k_pp_auc"] = lambda s, text, lower: min_k_plus_plus(
        s.logprobs, s.mu, s.sigma, params.min_k_plus_plus_fraction)
    return panel


def low_fpr_details(members: list[float], nonmembers: list[float], params: MembershipParams) -> dict:
    details = {"beyond_holdout_p99": share_beyond_percentile(members, nonmembers, 99)}
    for rate in params.low_false_positive_rates:
        hits, total = tpr_at_fpr(members, nonmembers, rate)
        details[f"tpr_at_{rate:g}_fpr"] = {"tpr": hits / total, "hits": hits, "n": total,
                                            "interval": clopper_pearson(hits, total)}
    return details


def auc_score(metric: str, values: dict[str, list[float]], params: MembershipParams) -> MetricScore:
    return MetricScore(metric, roc_auc(values["forget"], values["holdout"]), len(values["forget"]),
                       per_item=values, details=low_fpr_details(values["forget"], values["holdout"], params))


def reference_calibrated(loss: MetricScore, context: SuiteContext) -> dict[str, list[float]] | None:
    """loss_score(model) − loss_score(reference) per text, or None when there is no reference."""
    if context.role == "reference":
        reference = loss.per_item
    elif context.reference is not None:
        reference = context.reference["mia_loss_auc"].per_item
    else:
        return None
    return {side: [own - ref for own, ref in zip(values, reference[side])] for side, values in loss.per_item.items()}


@register("membership_inference", MembershipParams)
def run(model, tokenizer, sets: AuditSets, params: MembershipParams, context: SuiteContext) -> list[MetricScore]:
    texts = {"forget": sets.forget_texts, "holdout": sets.holdout_texts}
    if not all(texts.values()):
        return []  # an AUC needs members and non-members
    stats = {side: token_statistics(model, tokenizer, side_texts) for side, side_texts in texts.items()}
    lower = {side: token_statistics(model, tokenizer, [t.lower() for t in side_texts]) for side, side_texts in texts.items()}
    scores = []
    for metric, attack in attacks(params).items():
        values = {side: [attack(s, t, low) for s, t, low in zip(stats[side], texts[side], lower[side])] for side in texts}
        scores.append(auc_score(metric, values, params))
    loss = next(score for score in scores if score.metric == "mia_loss_auc")
    calibrated = reference_calibrated(loss, context) if params.reference_calibrated else None
    if calibrated is not None:
        scores.append(auc_score("mia_reference_auc", calibrated, params))
    if sets.forget_people and sets.holdout_people:
        scores += person_tests(scores, sets)
    return scores


def person_tests(scores: list[MetricScore], sets: AuditSets) -> list[MetricScore]:
    """Every attack's person-level rank of each subject among the never-trained people (kept in the
    attack's details), and two rows for the family, one item per subject (sorted by pseudonym):
    the attacks combined (PERSON_RANK_METRIC, judged; audits.checks.rank_score) and the smallest
    attack's Bonferroni-corrected p-value (PERSON_METRIC, reported). Values are the subjects'
    means (the subject's own, for the usual one-person job)."""
    for score in scores:
        score.details["person"] = person_level(score.per_item, sets.forget_people, sets.holdout_people)
    attacks = {"population": scores[0].details["person"]["population"], "attacks": [score.metric for score in scores]}
    ranked = rank_score(PERSON_RANK_METRIC, [score.per_item for score in scores], sets.forget_people,
                        sets.holdout_people, **attacks)
    family = family_p_values({score.metric: score.details["person"] for score in scores}, ranked.details["combined"])
    ranked.details["subjects"] = family
    corrected = [family[subject]["p_member"] for subject in sorted(family)]
    return [ranked, MetricScore(PERSON_METRIC, sum(corrected) / len(corrected), len(corrected),
                                per_item={"items": corrected}, details=attacks)]
