"""Verdicts: a versioned policy of margins and minimum sample sizes, applied per metric with
bootstrap confidence intervals. Pure Python and numpy; the policy is stored with each audit run
and printed on the certificate.

Forget metrics (rule "match_reference", DESIGN §10): with the 95% interval of
(unlearned − reference), PASS when it lies inside ±margin, FAIL when it lies wholly outside,
INCONCLUSIVE when it straddles the margin. The audit must also show power: the interval of
(original − reference) must lie wholly outside ±margin, or the audit could not have told a model
that knows the subject from one that never saw them, and the verdict is INCONCLUSIVE.
Utility metrics (rule "keep_original"): with the interval of (original − unlearned), PASS when
its upper end is within the margin, FAIL when its lower end exceeds it.

Intervals: paired bootstrap over items (the three models answer the same items); for AUCs the
forget and holdout items are resampled separately (stratified) and each resample scores all models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from audits.metrics import roc_auc

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass(frozen=True)
class MetricRule:
    metric: str
    audit: str
    rule: str  # match_reference | keep_original
    margin: float
    min_samples: int
    label: str


@dataclass(frozen=True)
class VerdictPolicy:
    version: str
    rules: tuple[MetricRule, ...]
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VerdictPolicy:
        return cls(**{**data, "rules": tuple(MetricRule(**rule) for rule in data["rules"])})


FOUNDATION_POLICY = VerdictPolicy(
    version="2026.11-mia-panel",
    rules=(
        MetricRule("forget_qa_accuracy", "knowledge_qa", "match_reference", 0.2, 5, "Forget QA accuracy"),
        MetricRule("verbatim_rouge_l", "verbatim_extraction", "match_reference", 0.15, 5, "Verbatim extraction (ROUGE-L F1)"),
        MetricRule("mia_loss_auc", "membership_inference", "match_reference", 0.15, 5, "MIA AUC, LOSS"),
        MetricRule("mia_zlib_auc", "membership_inference", "match_reference", 0.15, 5, "MIA AUC, zlib"),
        MetricRule("mia_lowercase_auc", "membership_inference", "match_reference", 0.15, 5, "MIA AUC, lowercase"),
        MetricRule("mia_min_k_20_auc", "membership_inference", "match_reference", 0.15, 5, "MIA AUC, Min-K% (k=20%)"),
        MetricRule("mia_min_k_40_auc", "membership_inference", "match_reference", 0.15, 5, "MIA AUC, Min-K% (k=40%)"),
        MetricRule("mia_min_k_pp_auc", "membership_inference", "match_reference", 0.15, 5, "MIA AUC, Min-K%++ (k=20%)"),
        MetricRule("retain_qa_accuracy", "knowledge_qa", "keep_original", 0.1, 20, "Retained people's QA accuracy (utility)"),
    ),
)


@dataclass(frozen=True)
class Judgement:
    metric: str
    audit: str
    label: str
    original: float
    unlearned: float
    reference: float
    margin: float
    sample_size: int
    difference_interval: tuple[float, float]  # unlearned − reference (match_reference) or original − unlearned (keep_original)
    power_interval: tuple[float, float] | None  # original − reference (match_reference only)
    verdict: str
    explanation: str


def statistic(per_item: dict[str, list[float]], forget_index=None, holdout_index=None) -> float:
    """A metric's value from its per-item scores: a mean of item scores, or an AUC of forget vs holdout."""
    if "items" in per_item:
        items = np.asarray(per_item["items"])
        return float(items[forget_index].mean() if forget_index is not None else items.mean())
    forget, holdout = np.asarray(per_item["forget"]), np.asarray(per_item["holdout"])
    if forget_index is not None:
        forget, holdout = forget[forget_index], holdout[holdout_index]
    return roc_auc(forget, holdout)


def bootstrap_intervals(per_item: dict[str, dict[str, list[float]]], pairs: list[tuple[str, str]],
                        policy: VerdictPolicy) -> dict[tuple[str, str], tuple[float, float]]:
    """Percentile intervals of statistic(a) − statistic(b) for each (a, b) role pair, on shared resamples."""
    first = next(iter(per_item.values()))
    n_forget = len(first.get("items", first.get("forget", [])))
    n_holdout = len(first.get("holdout", []))
    rng = np.random.default_rng(policy.seed)
    differences: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for _ in range(policy.resamples):
        forget_index = rng.integers(0, n_forget, n_forget)
        holdout_index = rng.integers(0, n_holdout, n_holdout) if n_holdout else None
        values = {role: statistic(scores, forget_index, holdout_index) for role, scores in per_item.items()}
        for a, b in pairs:
            differences[(a, b)].append(values[a] - values[b])
    tail = (1 - policy.confidence) / 2 * 100
    return {pair: (float(np.percentile(d, tail)), float(np.percentile(d, 100 - tail))) for pair, d in differences.items()}


def _fmt(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def judge_metric(rule: MetricRule, per_item: dict[str, dict[str, list[float]]], policy: VerdictPolicy) -> Judgement:
    values = {role: statistic(scores) for role, scores in per_item.items()}
    first = per_item["original"]
    sample_size = len(first.get("items", first.get("forget", [])))
    pct = f"{policy.confidence:.0%}"

    def result(verdict, explanation, difference, power=None) -> Judgement:
        return Judgement(rule.metric, rule.audit, rule.label, values["original"], values["unlearned"],
                         values["reference"], rule.margin, sample_size, difference, power, verdict, explanation)

    if rule.rule == "keep_original":
        drop = bootstrap_intervals(per_item, [("original", "unlearned")], policy)[("original", "unlearned")]
        if sample_size < rule.min_samples:
            return result(INCONCLUSIVE, f"{sample_size} items; the policy needs at least {rule.min_samples}", drop)
        if drop[1] <= rule.margin:
            return result(PASS, f"{pct} interval of the drop from the original {_fmt(drop)} stays within {rule.margin}", drop)
        if drop[0] > rule.margin:
            return result(FAIL, f"{pct} interval of the drop from the original {_fmt(drop)} lies beyond {rule.margin}", drop)
        return result(INCONCLUSIVE, f"{pct} interval of the drop {_fmt(drop)} straddles the margin {rule.margin}", drop)

    intervals = bootstrap_intervals(per_item, [("unlearned", "reference"), ("original", "reference")], policy)
    difference, power = intervals[("unlearned", "reference")], intervals[("original", "reference")]
    if sample_size < rule.min_samples:
        return result(INCONCLUSIVE, f"{sample_size} items; the policy needs at least {rule.min_samples}", difference, power)
    if not (power[0] > rule.margin or power[1] < -rule.margin):
        return result(INCONCLUSIVE, f"no power: original − reference {_fmt(power)} does not clear ±{rule.margin}",
                      difference, power)
    if -rule.margin <= difference[0] and difference[1] <= rule.margin:
        return result(PASS, f"unlearned − reference {_fmt(difference)} lies within ±{rule.margin}; "
                            f"original − reference {_fmt(power)}", difference, power)
    if difference[0] > rule.margin or difference[1] < -rule.margin:
        return result(FAIL, f"unlearned − reference {_fmt(difference)} lies beyond ±{rule.margin}", difference, power)
    return result(INCONCLUSIVE, f"unlearned − reference {_fmt(difference)} straddles ±{rule.margin} "
                                f"({sample_size} forget items)", difference, power)


def judge(per_item: dict[str, dict[str, dict[str, list[float]]]], policy: VerdictPolicy = FOUNDATION_POLICY) -> list[Judgement]:
    """`per_item[role][metric]` = that metric's per-item scores, for roles original, unlearned, reference."""
    return [
        judge_metric(rule, {role: per_item[role][rule.metric] for role in ("original", "unlearned", "reference")}, policy)
        for rule in policy.rules
    ]


def overall(verdicts: list[str]) -> str:
    if FAIL in verdicts:
        return FAIL
    return PASS if set(verdicts) == {PASS} else INCONCLUSIVE
