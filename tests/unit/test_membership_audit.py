import pytest

from audits.checks import AUDITS, AuditSets, MetricScore, SuiteContext
from audits.checks.membership import MembershipParams
from audits.metrics import roc_auc
from unlearning.loading import load_checkpoint

PANEL = {"mia_loss_auc", "mia_zlib_auc", "mia_lowercase_auc", "mia_min_k_20_auc", "mia_min_k_40_auc", "mia_min_k_pp_auc"}


def test_the_panel_scores_every_attack_and_separates_trained_from_never_trained_people(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    world = tiny_model.world
    forget = [r.text for person in world.trained_people[:4] for r in world.person_records(person, include_canary=False)]
    holdout = [r.text for r in world.holdout_records()]
    scores = {s.metric: s for s in AUDITS["membership_inference"].run(
        model, tokenizer, AuditSets(forget, holdout), MembershipParams(), SuiteContext("original"))}

    assert set(scores) == PANEL
    for score in scores.values():
        assert score.sample_size == len(forget) and len(score.per_item["holdout"]) == len(holdout)
        assert score.value == pytest.approx(roc_auc(score.per_item["forget"], score.per_item["holdout"]))
        low_fpr = score.details["tpr_at_0.01_fpr"]
        assert low_fpr["n"] == len(forget) and low_fpr["interval"][0] <= low_fpr["tpr"] <= low_fpr["interval"][1]
    assert scores["mia_loss_auc"].value > 0.9  # the model memorised these people
    assert scores["mia_min_k_pp_auc"].value > 0.9


def test_the_reference_calibrated_attack_subtracts_the_references_loss_per_text(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    world = tiny_model.world
    sets = AuditSets([r.text for r in world.person_records(world.trained_people[0], include_canary=False)],
                     [r.text for r in world.holdout_records()][:30])
    run = AUDITS["membership_inference"].run
    own = {s.metric: s for s in run(model, tokenizer, sets, MembershipParams(), SuiteContext("reference"))}
    assert set(own["mia_reference_auc"].per_item["forget"]) == {0.0} and own["mia_reference_auc"].value == 0.5
    # A reference one nat per token worse on every text: the calibrated score is +1 everywhere.
    shifted_reference = {"mia_loss_auc": MetricScore(
        "mia_loss_auc", 0.0, 0, {side: [v - 1.0 for v in values] for side, values in own["mia_loss_auc"].per_item.items()})}
    calibrated = {s.metric: s for s in run(model, tokenizer, sets, MembershipParams(), SuiteContext("unlearned", shifted_reference))}
    assert calibrated["mia_reference_auc"].per_item["forget"] == pytest.approx([1.0] * len(sets.forget_texts))
