"""Acceptance of the audit suite: it must have power. On the demo world, for several seeds, it
FAILs the original and a deliberately under-unlearned model (one GradDiff step) and PASSes a model
retrained without the subjects (with another seed than the audits' own reference)."""

import pytest

from audits.power import power_cases
from audits.verdicts import FAIL, PASS
from unlearning.lm import TrainingRecipe
from unlearning.world import WorldConfig

from tests.conftest import TINY_WORLD_EPOCHS, TINY_WORLD_PEOPLE

FORGET_PEOPLE = 7  # 42 forget texts against 48 holdout texts on the 30-person world


@pytest.mark.power
@pytest.mark.parametrize("seed", [4, 5, 6])
def test_the_suite_fails_models_that_know_the_subjects_and_passes_a_retrained_one(seed, tmp_path):
    cases = {case.candidate: case for case in power_cases(
        WorldConfig(people=TINY_WORLD_PEOPLE, seed=seed), TrainingRecipe(epochs=TINY_WORLD_EPOCHS, seed=seed),
        FORGET_PEOPLE, tmp_path)}

    def verdicts(candidate):
        return {j.metric: j.verdict for j in cases[candidate].judgements}

    assert cases["original"].verdict == FAIL and cases["under_unlearned"].verdict == FAIL
    assert cases["retrained"].verdict == PASS, {m: v for m, v in verdicts("retrained").items() if v != PASS}
    # Every forgetting audit that is judged has power here: each one fails the original on its own.
    forgetting = {j.metric for j in cases["retrained"].judgements if j.verdict == PASS and j.power_interval is not None}
    assert forgetting and all(verdicts("original")[metric] == FAIL for metric in forgetting)
