import numpy as np
import pytest

from audits.verdicts import FAIL, INCONCLUSIVE, PASS, MetricRule, VerdictPolicy, bootstrap_intervals, judge_metric, overall

POLICY = VerdictPolicy(version="test", rules=(), resamples=400)
QA = MetricRule("forget_qa_accuracy", "knowledge_qa", "match_reference", 0.2, 5, "QA")
AUC = MetricRule("mia_loss_auc", "membership_inference", "match_reference", 0.15, 5, "AUC")
UTILITY = MetricRule("retain_qa_accuracy", "knowledge_qa", "keep_original", 0.1, 20, "utility")


def items(values):
    return {"items": [float(v) for v in values]}


def test_unlearned_like_reference_and_original_unlike_it_passes():
    judgement = judge_metric(QA, {"original": items([1] * 40), "unlearned": items([0] * 40), "reference": items([0] * 40)}, POLICY)
    assert judgement.verdict == PASS
    assert judgement.difference_interval == (0.0, 0.0) and judgement.power_interval == (1.0, 1.0)


def test_unlearned_like_original_fails():
    judgement = judge_metric(QA, {"original": items([1] * 40), "unlearned": items([1] * 40), "reference": items([0] * 40)}, POLICY)
    assert judgement.verdict == FAIL


def test_without_power_the_verdict_is_inconclusive():
    same = items([1, 0] * 20)
    judgement = judge_metric(QA, {"original": same, "unlearned": same, "reference": same}, POLICY)
    assert judgement.verdict == INCONCLUSIVE and "no power" in judgement.explanation


def test_too_few_items_is_inconclusive_and_says_how_many():
    judgement = judge_metric(QA, {"original": items([1] * 3), "unlearned": items([0] * 3), "reference": items([0] * 3)}, POLICY)
    assert judgement.verdict == INCONCLUSIVE and "3 items" in judgement.explanation


def test_auc_interval_is_a_stratified_bootstrap_that_shrinks_with_more_items():
    rng = np.random.default_rng(0)

    def scores(n, shift):
        return {"forget": list(rng.normal(shift, 1, n)), "holdout": list(rng.normal(0, 1, 300))}

    def per_item(n):  # the original knows the forget items; unlearned and reference are independent non-members
        return {"original": scores(n, 3), "unlearned": scores(n, 0), "reference": scores(n, 0)}

    small = judge_metric(AUC, per_item(6), POLICY)
    large = judge_metric(AUC, per_item(200), POLICY)
    width = lambda j: j.difference_interval[1] - j.difference_interval[0]  # noqa: E731
    assert width(large) < width(small) / 1.5  # the holdout's share of the variance is the same in both
    assert large.verdict == PASS and small.verdict == INCONCLUSIVE
    assert large.original > 0.95 and 0.4 < large.reference < 0.6


def test_bootstrap_interval_covers_the_point_difference():
    per_item = {"a": items([1, 0, 1, 1, 0] * 10), "b": items([0, 0, 1, 0, 0] * 10)}
    low, high = bootstrap_intervals(per_item, [("a", "b")], POLICY)[("a", "b")]
    assert low < 0.4 < high


def test_utility_rule_compares_with_the_original():
    keep = judge_metric(UTILITY, {"original": items([1] * 100), "unlearned": items([1] * 97 + [0] * 3), "reference": items([1] * 100)}, POLICY)
    lose = judge_metric(UTILITY, {"original": items([1] * 100), "unlearned": items([1] * 50 + [0] * 50), "reference": items([1] * 100)}, POLICY)
    assert keep.verdict == PASS and lose.verdict == FAIL and keep.power_interval is None


@pytest.mark.parametrize("verdicts, expected", [
    ([PASS, PASS], PASS), ([PASS, INCONCLUSIVE], INCONCLUSIVE), ([PASS, FAIL, INCONCLUSIVE], FAIL),
])
def test_overall_verdict(verdicts, expected):
    assert overall(verdicts) == expected
