import numpy as np
import pytest

from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from audits.verdicts import (
    AGAINST_HOLDOUT,
    FAIL,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    PASS,
    ROLES,
    MetricRule,
    VerdictPolicy,
    bootstrap_intervals,
    difference,
    judge,
    judge_metric,
    overall,
)

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
    per_item = {"original": items([1, 0, 1, 1, 0] * 10), "b": items([0, 0, 1, 0, 0] * 10)}
    low, high = bootstrap_intervals(per_item, {"d": difference("original", "b")}, POLICY)["d"]
    assert low < 0.4 < high


def test_utility_rule_compares_with_the_original():
    keep = judge_metric(UTILITY, {"original": items([1] * 100), "unlearned": items([1] * 97 + [0] * 3), "reference": items([1] * 100)}, POLICY)
    lose = judge_metric(UTILITY, {"original": items([1] * 100), "unlearned": items([1] * 50 + [0] * 50), "reference": items([1] * 100)}, POLICY)
    assert keep.verdict == PASS and lose.verdict == FAIL and keep.power_interval is None


def test_a_loss_degrades_upwards():
    loss = MetricRule("retain_text_loss", "utility", "keep_original", 0.15, 20, "loss", higher_is_better=False)
    kept = judge_metric(loss, {"original": items([1.0] * 50), "unlearned": items([0.9] * 50), "reference": items([1.0] * 50)}, POLICY)
    raised = judge_metric(loss, {"original": items([1.0] * 50), "unlearned": items([1.5] * 50), "reference": items([1.0] * 50)}, POLICY)
    assert kept.verdict == PASS and kept.difference_interval == pytest.approx((-0.1, -0.1))
    assert raised.verdict == FAIL


KS = MetricRule("forget_quality_ks", "knowledge_qa", "distribution_match", 0.35, 10, "KS", source="forget_truth_ratio")


def test_forget_quality_is_the_ks_distance_to_the_reference_with_scipys_p_value():
    rng = np.random.default_rng(3)
    known, unknown, other = rng.lognormal(-3, 1, 60), rng.lognormal(0, 1, 60), rng.lognormal(0, 1, 60)
    per_item = {"original": items(known), "unlearned": items(other), "reference": items(unknown)}
    judgement = judge_metric(KS, per_item, POLICY)
    assert judgement.unlearned == pytest.approx(ks_2samp(other, unknown).statistic)
    assert judgement.original == pytest.approx(ks_2samp(known, unknown).statistic) and judgement.reference == 0.0
    assert judgement.details["ks_p_value_unlearned"] == pytest.approx(ks_2samp(other, unknown).pvalue)
    assert judgement.verdict == PASS and judgement.power_interval[0] > 0.35
    failed = judge_metric(KS, {**per_item, "unlearned": items(known * 1.1)}, POLICY)
    assert failed.verdict == FAIL


def test_a_rule_reads_its_source_metric():
    rng = np.random.default_rng(4)
    ratios = {role: {"forget_truth_ratio": items(rng.lognormal(0, 1, 30))} for role in ("original", "unlearned", "reference")}
    [judgement] = judge(ratios, VerdictPolicy(version="t", rules=(KS,), resamples=100))
    assert judgement.metric == "forget_quality_ks" and judgement.sample_size == 30


EXPOSURE = MetricRule("canary_exposure", "canary_exposure", "below_null_threshold", 6.64, 1, "exposure")


@pytest.mark.parametrize("original, unlearned, expected", [
    ([9.9, 8.0], [1.2, 3.0], PASS), ([9.9, 8.0], [1.2, 7.0], FAIL), ([9.9, 2.0], [1.2, 1.0], INCONCLUSIVE),
])
def test_exposure_is_judged_against_its_null_threshold(original, unlearned, expected):
    judgement = judge_metric(EXPOSURE, {"original": items(original), "unlearned": items(unlearned), "reference": items([5.0, 0.5])}, POLICY)
    assert judgement.verdict == expected


def test_nothing_to_measure_and_report_rules_are_not_applicable():
    empty = judge_metric(EXPOSURE, {"original": items([]), "unlearned": items([]), "reference": items([])}, POLICY)
    no_reference = judge_metric(QA, {"original": items([1] * 9), "unlearned": items([0] * 9), "reference": {}}, POLICY)
    report = judge_metric(MetricRule("x", "a", "report", 0, 1, "x"), {r: items([1, 0]) for r in ("original", "unlearned", "reference")}, POLICY)
    assert empty.verdict == no_reference.verdict == report.verdict == NOT_APPLICABLE
    assert empty.original is None and no_reference.reference is None and report.unlearned == 0.5


@pytest.mark.parametrize("verdicts, expected", [
    ([PASS, PASS], PASS), ([PASS, INCONCLUSIVE], INCONCLUSIVE), ([PASS, FAIL, INCONCLUSIVE], FAIL),
    ([PASS, NOT_APPLICABLE], PASS), ([NOT_APPLICABLE], INCONCLUSIVE),
])
def test_overall_verdict(verdicts, expected):
    assert overall(verdicts) == expected


# --- Compared with never-trained people (no retrained reference)

KS = MetricRule("forget_quality_ks", "knowledge_qa", "distribution_match", 0.35, 10, "KS", source="forget_truth_ratio")


def with_never_trained(forgotten, never_trained):
    return {"items": [float(v) for v in forgotten], "holdout_items": [float(v) for v in never_trained]}


def test_against_holdout_the_gap_to_never_trained_people_is_judged_and_shown():
    never_trained = [1, 0, 0, 0] * 15  # 25% of never-trained people's questions answered by luck
    per_item = {"original": with_never_trained([1] * 40, never_trained),
                "unlearned": with_never_trained([1, 0, 0, 0] * 10, never_trained)}
    judgement = judge_metric(QA, per_item, POLICY, comparison=AGAINST_HOLDOUT)
    assert judgement.verdict == PASS, judgement.explanation
    assert judgement.unlearned == 0.25 and judgement.reference == 0.25  # the baseline: its value on never-trained people
    low, high = judgement.difference_interval
    assert low < 0.0 < high and -0.2 <= low and high <= 0.2
    assert judgement.power_interval[0] > 0.2  # the original answers the subject's questions, not others'
    assert judgement.details["comparison"] == AGAINST_HOLDOUT and judgement.details["original_on_never_trained"] == 0.25


def test_against_holdout_a_model_that_still_answers_fails():
    per_item = {role: with_never_trained([1] * 40, [0] * 60) for role in ("original", "unlearned")}
    assert judge_metric(QA, per_item, POLICY, comparison=AGAINST_HOLDOUT).verdict == FAIL


def test_against_holdout_an_attack_auc_is_compared_with_chance():
    rng = np.random.default_rng(3)
    holdout = list(rng.normal(0, 1, 400))
    per_item = {"original": {"forget": list(rng.normal(3, 1, 200)), "holdout": holdout},
                "unlearned": {"forget": list(rng.normal(0, 1, 200)), "holdout": holdout}}
    judgement = judge_metric(AUC, per_item, POLICY, comparison=AGAINST_HOLDOUT)
    auc = roc_auc_score([1] * 200 + [0] * 400, per_item["unlearned"]["forget"] + holdout)
    assert judgement.verdict == PASS and judgement.reference == 0.5 and judgement.unlearned == pytest.approx(auc)
    assert judgement.difference_interval[0] < auc - 0.5 < judgement.difference_interval[1]


def test_against_holdout_forget_quality_is_the_ks_distance_between_the_two_sides():
    rng = np.random.default_rng(4)
    never_trained = list(rng.lognormal(0, 1, 300))
    per_item = {"original": with_never_trained(rng.lognormal(-3, 0.5, 200), never_trained),
                "unlearned": with_never_trained(rng.lognormal(0, 1, 200), never_trained)}
    judgement = judge_metric(KS, {role: per_item.get(role, {}) for role in ROLES}, POLICY, comparison=AGAINST_HOLDOUT)
    expected = ks_2samp(per_item["unlearned"]["items"], never_trained)
    assert judgement.unlearned == pytest.approx(expected.statistic) and judgement.reference is None
    assert judgement.details["ks_p_value_unlearned"] == pytest.approx(expected.pvalue)
    assert judgement.verdict == PASS, judgement.explanation


def test_against_holdout_no_reference_is_needed_but_never_trained_items_are():
    per_item = {role: items([1] * 40) for role in ("original", "unlearned")}
    judgement = judge_metric(QA, per_item, POLICY, comparison=AGAINST_HOLDOUT)
    assert judgement.verdict == NOT_APPLICABLE and "never-trained" in judgement.explanation
    assert judge_metric(QA, per_item, POLICY).verdict == NOT_APPLICABLE  # against a reference that was not measured


def test_identity_with_the_reference_proves_removal_where_the_policy_says_so():
    from dataclasses import replace

    from audits.verdicts import AGAINST_REFERENCE, CURRENT_POLICY, Judgement, run_verdict

    undecided = [Judgement(metric="mia_loss_auc", audit="membership_inference", label="AUC", original=0.9,
                           unlearned=0.5, reference=0.5, margin=0.1, sample_size=6, difference_interval=(-0.3, 0.3),
                           power_interval=(0.05, 0.7), verdict=INCONCLUSIVE, explanation="no power")]
    assert run_verdict(undecided, CURRENT_POLICY, AGAINST_REFERENCE, "a" * 64, "a" * 64, exact=True) == (PASS, "identity")
    # An approximate method's model that happened to match is not a proof of anything exact.
    assert run_verdict(undecided, CURRENT_POLICY, AGAINST_REFERENCE, "a" * 64, "a" * 64, exact=False) == (
        INCONCLUSIVE, "audits")
    # Not the same bytes, no reference, or a policy stored before the rule: the audits decide.
    assert run_verdict(undecided, CURRENT_POLICY, AGAINST_REFERENCE, "a" * 64, "b" * 64, exact=True) == (INCONCLUSIVE, "audits")
    assert run_verdict(undecided, CURRENT_POLICY, AGAINST_HOLDOUT, "a" * 64, None, exact=True) == (INCONCLUSIVE, "audits")
    older = VerdictPolicy.from_dict({k: v for k, v in CURRENT_POLICY.as_dict().items() if k != "identity_proves_removal"})
    assert run_verdict(undecided, older, AGAINST_REFERENCE, "a" * 64, "a" * 64, exact=True) == (INCONCLUSIVE, "audits")
    assert run_verdict(undecided, replace(CURRENT_POLICY, identity_proves_removal=False), AGAINST_REFERENCE,
                       "a" * 64, "a" * 64, exact=True) == (INCONCLUSIVE, "audits")


# --- One person among never-trained people (rule person_band) and the families' verdicts

PERSON = MetricRule("mia_person_rank", "membership_inference", "person_band", 0.025, 3, "You among never-trained")


def ranked(p_member, p_over, rank, population=50, texts=6):
    return {"items": [p_member], "over": [p_over], "rank": [rank], "population": [population], "texts": [texts]}


@pytest.mark.parametrize("original, unlearned, verdict, no_power, words", [
    (ranked(1 / 51, 1.0, 1), ranked(18 / 51, 34 / 51, 18), PASS, False, "ranked 18 of 51 after unlearning"),
    (ranked(1 / 51, 1.0, 1), ranked(1 / 51, 1.0, 1), FAIL, False, "still more member-like"),
    (ranked(1 / 51, 1.0, 1), ranked(1.0, 1 / 51, 51), FAIL, False, "over-unlearned"),
    (ranked(10 / 51, 42 / 51, 10), ranked(20 / 51, 32 / 51, 20), INCONCLUSIVE, True,
     "the original model already ranked this person 10 of 51"),
    (ranked(1 / 31, 1.0, 1, 30), ranked(15 / 31, 17 / 31, 15, 30), INCONCLUSIVE, True,
     "30 never-trained people; the smallest p-value they allow, 1/31, exceeds 0.025 (at least 39 are needed)"),
    (ranked(1 / 51, 1.0, 1, texts=2), ranked(18 / 51, 34 / 51, 18, texts=2), INCONCLUSIVE, True,
     "2 texts of this person; the policy needs at least 3"),
])
def test_one_person_passes_inside_the_never_trained_band_and_fails_beyond_it_on_either_side(
        original, unlearned, verdict, no_power, words):
    judgement = judge_metric(PERSON, {"original": original, "unlearned": unlearned, "reference": {}}, POLICY)
    assert (judgement.verdict, judgement.no_power) == (verdict, no_power)
    assert words in judgement.explanation
    assert judgement.original == original["items"][0] and judgement.unlearned == unlearned["items"][0]


def test_a_job_of_several_people_is_judged_per_person_and_shows_the_worst():
    both = {role: {side: a[side] + b[side] for side in a} for role, (a, b) in {
        "original": (ranked(1 / 51, 1.0, 1), ranked(1 / 51, 1.0, 1)),
        "unlearned": (ranked(18 / 51, 34 / 51, 18), ranked(1 / 51, 1.0, 1))}.items()}
    judgement = judge_metric(PERSON, {**both, "reference": {}}, POLICY)
    assert judgement.verdict == FAIL and judgement.sample_size == 2
    assert [v for v, _ in judgement.details["subject_verdicts"]] == [PASS, FAIL]
    assert judgement.explanation.startswith("1 of 2 subjects inside the band; first FAIL: ranked 1 of 51")


def judged(metric, audit, verdict, no_power=False, rule="match_reference"):
    from audits.verdicts import Judgement

    return Judgement(metric=metric, audit=audit, label=metric, original=1.0, unlearned=0.0, reference=0.0,
                     margin=0.1, sample_size=6, difference_interval=None, power_interval=None, verdict=verdict,
                     explanation=f"{metric} {verdict}", no_power=no_power)


FAMILY_POLICY = VerdictPolicy(version="test-families", family_rule="families decide", rules=(
    PERSON, AUC, QA, UTILITY,
    MetricRule("verbatim_rouge_l", "extraction", "match_reference", 0.15, 5, "Verbatim"),
))


@pytest.mark.parametrize("verdicts, expected", [
    # The person-level test decides its family over undecided text-level intervals.
    ({"mia_person_rank": PASS, "mia_loss_auc": INCONCLUSIVE, "forget_qa_accuracy": PASS, "retain_qa_accuracy": PASS,
      "verbatim_rouge_l": PASS}, {"membership": PASS, "_": PASS}),
    # ... but a FAIL anywhere fails the family, and any failed family the run.
    ({"mia_person_rank": PASS, "mia_loss_auc": FAIL, "forget_qa_accuracy": PASS, "retain_qa_accuracy": PASS,
      "verbatim_rouge_l": PASS}, {"membership": FAIL, "_": FAIL}),
    # Without power for this person, a family is INCONCLUSIVE and not counted.
    ({"mia_person_rank": PASS, "mia_loss_auc": INCONCLUSIVE, "forget_qa_accuracy": PASS, "retain_qa_accuracy": PASS,
      "verbatim_rouge_l": (INCONCLUSIVE, True)}, {"extraction": INCONCLUSIVE, "_": PASS}),
    # A close call (the interval straddles the margin) is counted: the run stays undecided.
    ({"mia_person_rank": PASS, "mia_loss_auc": INCONCLUSIVE, "forget_qa_accuracy": INCONCLUSIVE,
      "retain_qa_accuracy": PASS, "verbatim_rouge_l": PASS}, {"knowledge": INCONCLUSIVE, "_": INCONCLUSIVE}),
    # An undecided person-level test leaves the family to its metrics.
    ({"mia_person_rank": (INCONCLUSIVE, True), "mia_loss_auc": PASS, "forget_qa_accuracy": PASS,
      "retain_qa_accuracy": PASS, "verbatim_rouge_l": PASS}, {"membership": PASS, "_": PASS}),
    # Utility alone never makes a PASS: at least one forgetting family must be counted.
    ({"mia_person_rank": (INCONCLUSIVE, True), "mia_loss_auc": (INCONCLUSIVE, True),
      "forget_qa_accuracy": NOT_APPLICABLE, "retain_qa_accuracy": PASS, "verbatim_rouge_l": (INCONCLUSIVE, True)},
     {"knowledge": NOT_APPLICABLE, "membership": INCONCLUSIVE, "_": INCONCLUSIVE}),
])
def test_families_decide_the_run_by_the_policys_written_rule(verdicts, expected):
    from audits.verdicts import AGAINST_REFERENCE, family_verdicts, run_verdict

    rules = {rule.metric: rule for rule in FAMILY_POLICY.rules}
    judgements = [judged(metric, rules[metric].audit, *(v if isinstance(v, tuple) else (v,)))
                  for metric, v in verdicts.items()]
    families = {f.family: f for f in family_verdicts(judgements, FAMILY_POLICY)}
    assert list(families) == ["membership", "extraction", "knowledge", "utility"]  # FAMILIES' order
    for family, verdict in expected.items():
        if family != "_":
            assert families[family].verdict == verdict, families[family]
    assert run_verdict(judgements, FAMILY_POLICY, AGAINST_REFERENCE, "a" * 64, "b" * 64, exact=False) == (
        expected["_"], "audits")
    assert families["utility"].verdict == PASS  # retain_qa_accuracy keeps the original: utility, not knowledge


def test_every_rule_of_every_policy_has_a_family_and_the_rule_is_written_down():
    from audits.verdicts import FAMILIES, FAMILY_RULE, POLICIES, family_of

    for policy in POLICIES.values():
        assert policy.family_rule == FAMILY_RULE
        assert {family_of(rule) for rule in policy.rules} <= set(FAMILIES)
    assert "not counted" in FAMILY_RULE and "Overall: FAIL if any family fails" in FAMILY_RULE


def test_in_a_job_of_several_people_each_one_gets_their_own_verdict():
    from audits.verdicts import subject_verdicts

    rules = (PERSON, QA, UTILITY)
    policy = VerdictPolicy(version="test-families", family_rule="families decide", rules=rules)
    two = {"original": {side: a[side] + b[side] for side, a, b in
                        ((side, ranked(1 / 51, 1.0, 1), ranked(1 / 51, 1.0, 1)) for side in ranked(0, 0, 0))},
           "unlearned": {side: a[side] + b[side] for side, a, b in
                         ((side, ranked(18 / 51, 34 / 51, 18), ranked(1 / 51, 1.0, 1)) for side in ranked(0, 0, 0))}}
    per_item = {role: {"mia_person_rank": two[role]} for role in ("original", "unlearned")}
    shared = [judged("forget_qa_accuracy", "knowledge_qa", PASS), judged("retain_qa_accuracy", "knowledge_qa", PASS)]
    whole = judge_metric(PERSON, {**two, "reference": {}}, POLICY)
    verdicts = subject_verdicts(shared + [whole], per_item, {"mia_person_rank": ["ann", "bob"]}, policy)
    assert whole.verdict == FAIL  # the job's row shows the worst subject
    assert verdicts["ann"]["verdict"] == PASS and verdicts["bob"]["verdict"] == FAIL
    membership = {name: next(f for f in entry["families"] if f["family"] == "membership")
                  for name, entry in verdicts.items()}
    assert membership["ann"]["verdict"] == PASS and "ranked 18 of 51" in membership["ann"]["explanation"]
    assert membership["bob"]["verdict"] == FAIL


def test_an_interval_past_both_ends_of_the_band_has_no_power_but_one_leaning_out_is_a_close_call():
    reference = [1, 0] * 6
    original = [1] * 12  # original − reference: 0.5 ± about 0.25, clear of the margin
    wide = judge_metric(QA, {"original": items(original), "unlearned": items([0, 1] * 6),
                             "reference": items(reference)}, POLICY)  # differences ±1 around 0
    leaning = judge_metric(QA, {"original": items(original), "unlearned": items([1, 1, 1, 0] * 3),
                                "reference": items(reference)}, POLICY)
    assert wide.difference_interval[0] < -QA.margin and wide.difference_interval[1] > QA.margin
    assert (wide.verdict, wide.no_power) == (INCONCLUSIVE, True) and "past both ends" in wide.explanation
    assert leaning.difference_interval[0] > -QA.margin and leaning.difference_interval[1] > QA.margin
    assert (leaning.verdict, leaning.no_power) == (INCONCLUSIVE, False) and "straddles" in leaning.explanation
