"""Power of the audit suite on a demo world: does it FAIL models that still know the subjects and
PASS a model that never saw them?

For one seed: train the original on the world; retrain without the forget people twice, with
different seeds (one is the audits' reference, the other plays an exact unlearning); and take an
under-unlearned model (GradDiff stopped after one tiny step). Each candidate is audited against
the reference exactly as a job would be. Pure ML code: no Django.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

from audits.checks import SuiteContext, per_item_by_role, run_suite, score_models
from audits.sets import audit_sets
from audits.verdicts import CURRENT_POLICY, Judgement, VerdictPolicy, judge, overall
from unlearning.demo_world import DemoModel, build_demo_model
from unlearning.lm import TrainingRecipe, load_checkpoint, train_causal_lm
from unlearning.manifest import read_manifest
from unlearning.methods import UnlearningData, get_method
from unlearning.world import WorldConfig


@dataclass(frozen=True)
class PowerCase:
    candidate: str  # original | under_unlearned | retrained
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
    base = score_models({"original": lambda: (original, tokenizer), "reference": lambda: (reference, tokenizer)}, sets)
    cases = []
    for name, candidate in candidates.items():
        unlearned = run_suite(candidate, tokenizer, sets, SuiteContext(role="unlearned", reference=base["reference"]))
        judgements = judge(per_item_by_role({**base, "unlearned": unlearned}), policy)
        cases.append(PowerCase(name, overall([j.verdict for j in judgements]), judgements))
    return cases
