"""Power of the audit suite on a demo world: does it FAIL models that still know the subjects and
PASS a model that never saw them?

For one seed: train the original on the world; retrain without the forget people twice, with
different seeds (one is the audits' reference, the other plays an exact unlearning); and take an
under-unlearned model (GradDiff stopped after one tiny step). Each candidate is audited exactly as
a job would be, once against the reference and once against never-trained people (the
comparison made when no reference is affordable).

`person_power_cases` asks the same one person at a time, on the person-level tests alone (each
subject ranked among every never-trained person: audits.persons): the original and one
under-unlearned model per subject must FAIL that subject, a model retrained without the subjects
(with another seed) must PASS each of them. Pure ML code: no Django.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

from audits.checks import PERSON_LEVEL_TESTS, SuiteContext, per_item_by_role, score_model
from audits.sets import audit_sets
from audits.verdicts import (
    AGAINST_HOLDOUT,
    AGAINST_REFERENCE,
    CURRENT_POLICY,
    FAIL,
    PERSON_BAND,
    FamilyVerdict,
    Judgement,
    VerdictPolicy,
    audits_verdict,
    family_verdicts,
    judge,
    judge_metric,
    one_subject,
    verdict_of_families,
)
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
    params = method.params({"max_steps": 1, "eval_every_steps": 1})
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
            cases.append(PowerCase(name, comparison, audits_verdict(judgements, policy), judgements))
    return cases


# The audits the person-level tests read: membership ranks people itself; the others are also run
# on every never-trained person (audits.checks.PERSON_LEVEL_TESTS).
PERSON_AUDITS = ("membership_inference", *(audit for audit, _ in PERSON_LEVEL_TESTS.values()))


@dataclass(frozen=True)
class PersonCase:
    subject: str  # the subject's owner key
    candidate: str  # original | under_unlearned | retrained
    verdict: str  # the policy's family rule over the person-level families alone
    families: list[FamilyVerdict]

    @property
    def over_unlearned(self) -> bool:
        """FAIL because the subject sits below the never-trained people's band, not above it."""
        return self.verdict == FAIL and any("over-unlearned" in f.explanation for f in self.families if f.verdict == FAIL)


def person_level_rows(model, tokenizer, sets, policy: VerdictPolicy) -> dict[str, dict]:
    """The person-level rows (metric → per-item scores, one item per subject) of one model."""
    scores = score_model(model, tokenizer, sets, SuiteContext(role="unlearned"), only=PERSON_AUDITS)
    return {rule.metric: scores[rule.metric].per_item for rule in policy.rules
            if rule.rule == PERSON_BAND and rule.metric in scores}


def person_verdict(original: dict, candidate: dict, policy: VerdictPolicy) -> tuple[str, list[FamilyVerdict]]:
    rules = [rule for rule in policy.rules if rule.metric in original and rule.metric in candidate]
    judgements = [judge_metric(rule, {"original": original[rule.metric], "unlearned": candidate[rule.metric],
                                      "reference": {}}, policy) for rule in rules]
    families = family_verdicts(judgements, policy)
    return verdict_of_families(families), families


def person_power_cases(world: WorldConfig, recipe: TrainingRecipe, subjects: int, store: Path,
                       policy: VerdictPolicy = CURRENT_POLICY) -> list[PersonCase]:
    demo = build_demo_model(world, recipe, store)
    manifest, holdout = read_manifest(demo.training_manifest), read_manifest(demo.holdout_manifest)
    people = [person.owner_key for person in demo.world.trained_people[:subjects]]  # sorted below, as rows are
    records = {key: {r["record_id"] for r in manifest if r.get("owner_key") == key} for key in people}
    everyone = set().union(*records.values())
    original, tokenizer = load_checkpoint(demo.checkpoint_path)
    kept = [r["text"] for r in manifest if r["record_id"] not in everyone]
    retrained = train_causal_lm(kept, tokenizer, replace(recipe, seed=recipe.seed + 1000))
    together = audit_sets(manifest, holdout, everyone, everyone)
    # Every subject has texts and questions, so each row holds all three, sorted like `sorted(people)`.
    rows = {"original": person_level_rows(original, tokenizer, together, policy),
            "retrained": person_level_rows(retrained, tokenizer, together, policy)}
    cases = []
    for index, key in enumerate(sorted(people)):
        alone = audit_sets(manifest, holdout, records[key], records[key])
        forget = [r["text"] for r in manifest if r["record_id"] in records[key]]
        under = person_level_rows(under_unlearned(original, tokenizer, forget, kept), tokenizer, alone, policy)
        before = {metric: one_subject(per_item, index) for metric, per_item in rows["original"].items()}
        for candidate, after in (("original", before), ("under_unlearned", under),
                                 ("retrained", {metric: one_subject(per_item, index)
                                                for metric, per_item in rows["retrained"].items()})):
            cases.append(PersonCase(key, candidate, *person_verdict(before, after, policy)))
    return cases
