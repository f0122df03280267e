"""Acceptance of the audit suite: it must have power. On the demo world, for several seeds, it
FAILs the original and a deliberately under-unlearned model (one GradDiff step) and PASSes a model
retrained without the subjects (with another seed than the audits' own reference). Compared with
never-trained people instead of a reference, it still FAILs both, and never FAILs the retrained
model: with 7 forget people against 6 never-trained ones, some of its intervals straddle the
margins (INCONCLUSIVE), which is what weaker evidence on few people should say."""

import pytest

from audits.power import power_cases
from audits.verdicts import AGAINST_HOLDOUT, AGAINST_REFERENCE, FAIL, PASS
from unlearning.lm import TrainingRecipe
from unlearning.world import WorldConfig

from tests.conftest import TINY_WORLD_EPOCHS, TINY_WORLD_PEOPLE

FORGET_PEOPLE = 7  # 42 forget texts against 48 holdout texts on the 30-person world


@pytest.mark.power
@pytest.mark.parametrize("seed", [4, 5])
def test_the_suite_fails_models_that_know_the_subjects_and_passes_a_retrained_one(seed, tmp_path):
    every_case = power_cases(WorldConfig(people=TINY_WORLD_PEOPLE, seed=seed),
                             TrainingRecipe(epochs=TINY_WORLD_EPOCHS, seed=seed), FORGET_PEOPLE, tmp_path)
    cases = {case.candidate: case for case in every_case if case.comparison == AGAINST_REFERENCE}
    without_reference = {case.candidate: case for case in every_case if case.comparison == AGAINST_HOLDOUT}

    def verdicts(candidate):
        return {j.metric: j.verdict for j in cases[candidate].judgements}

    assert cases["original"].verdict == FAIL and cases["under_unlearned"].verdict == FAIL
    assert cases["retrained"].verdict == PASS, {m: v for m, v in verdicts("retrained").items() if v != PASS}
    # Every forgetting audit that is judged has power here: each one fails the original on its own.
    forgetting = {j.metric for j in cases["retrained"].judgements if j.verdict == PASS and j.power_interval is not None}
    assert forgetting and all(verdicts("original")[metric] == FAIL for metric in forgetting)

    assert without_reference["original"].verdict == FAIL and without_reference["under_unlearned"].verdict == FAIL
    retrained = {j.metric: j.verdict for j in without_reference["retrained"].judgements}
    assert FAIL not in retrained.values(), retrained
    assert retrained["forget_qa_accuracy"] == PASS


@pytest.mark.power
def test_one_person_at_a_time_the_original_and_an_under_unlearned_model_fail_and_a_retrain_passes(tmp_path):
    """The reduced single-person power table (bench/audits/run.py --person-power-seeds; the full
    one is in bench/RESULTS.md): 40 never-trained people, two subjects, each judged alone on the
    person-level tests."""
    from audits.power import person_power_cases

    cases = person_power_cases(WorldConfig(people=80, holdout_fraction=0.5, seed=1), TrainingRecipe(epochs=40, seed=1),
                               2, tmp_path)
    verdicts = {(case.subject, case.candidate): case.verdict for case in cases}
    assert len(verdicts) == 6
    for (subject, candidate), verdict in verdicts.items():
        assert verdict == (PASS if candidate == "retrained" else FAIL), (subject, candidate, verdict)
    retrained = [case for case in cases if case.candidate == "retrained"]
    # Every person-level family decided for each subject (none left without power).
    assert all(family.verdict == PASS for case in retrained for family in case.families)
