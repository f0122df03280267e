"""Power of the audit suite on a demo world: does it FAIL models that still know the subjects and
PASS a model that never saw them?

For one seed: train the original on the world; retrain without the forget people twice, with
different seeds (one is the audits' reference, the other plays an exact unlearning); and take an
under-unlearned model (GradDiff stopped after one tiny step). Each candidate is audited exactly as
a job would be, once against the reference and once against never-trained people (the
comparison made when no reference is affordable). Pure ML code: no Django.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

from audits.checks import SuiteContext, per_item_by_role, score_model
from audits.sets import audit_sets
from audits.verdicts import AGAINST_HOLDOUT, AGAINST_REFERENCE, CURRENT_POLICY, Judgement, VerdictPolicy, judge, overall
from unlearning.demo_world import DemoModel, build_demo_model
from unlearning.lm import TrainingRecipe, train_causal_lm
from unlearning.loading import load_checkpoint
from unlearning.manifest import read_manifest
from unlearning.methods import UnlearningData, get_method
from unlearning.world import WorldConfig


@dataclass(frozen=True)
class PowerCase:
    candidate: str  # original | under_unlearned | retrained
    comparison: str  # what it was compared with: audits.verdicts.AGAINST_REFERENCE or AGAINST_HOLDOUT
    verdict: str
    judgements: list[Judgement]


def forget_ids_of(demo: DemoModel, manifest: list[dict], people: int) -> set[str]:
    keys = {person.owner_key for person in demo.world.trained_people[:people]}
    return {r["record_id"] for r in manifest if r.get("owner_key") in keys}


def under_unlearned(model, tokenizer, forget: list[str], retain: list[str]):
    method = get_method("graddiff")
    params = method.params({"max_steps": 1, "eval_every": 1})
    return method.unlearn(copy.deepcopy(model), tokenizer, UnlearningData(forget, retain), params).model


def power_cases(world: WorldConfig, recipe: TrainingRecipe, forget_people: int, store: Path,
                policy: VerdictPolicy = CURRENT_POLICY) -> list[PowerCase]:
    demo = build_demo_model(world, recipe, store)
    manifest, holdout = read_manifest(demo.training_manifest), read_manifest(demo.holdout_manifest)
    forget_ids = forget_ids_of(demo, manifest, forget_people)
    sets = audit_sets(manifest, holdout, forget_ids, forget_ids)
    original, tokenizer = load_checkpoint(demo.checkpoint_path)
    kept = [r["text"] for r in manifest if r["record_id"] not in forget_ids]
    forget = [r["text"] for r in manifest if r["record_id"] in forget_ids]
    reference = train_causal_lm(kept, tokenizer, recipe)
    candidates = {
        "original": original,
        "under_unlearned": under_unlearned(original, tokenizer, forget, kept),
        "retrained": train_causal_lm(kept, tokenizer, replace(recipe, seed=recipe.seed + 1000)),
    }
    reference_scores = score_model(reference, tokenizer, sets, SuiteContext(role="reference"))
    cases = []
    for comparison in (AGAINST_REFERENCE, AGAINST_HOLDOUT):
        against_holdout = comparison == AGAINST_HOLDOUT
        base = {} if against_holdout else {"reference": reference_scores}

        def scores(model, role):
            context = SuiteContext(role=role, reference=base.get("reference"))
            return score_model(model, tokenizer, sets, context, compare_with_never_trained=against_holdout)

        base["original"] = scores(original, "original")
        for name, candidate in candidates.items():
            judgements = judge(per_item_by_role({**base, "unlearned": scores(candidate, "unlearned")}), policy, comparison)
            cases.append(PowerCase(name, comparison, overall([j.verdict for j in judgements]), judgements))
    return cases
