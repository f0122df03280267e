"""The audits' figures against independent computations on the tiny trained model: one text at a
time, no batching, no padding, real greedy generation."""

import math

import numpy as np
import pytest
import torch

from audits.checks import AUDITS, Canary, SuiteContext
from audits.checks.canary_exposure import CanaryExposureParams, reference_texts
from audits.checks.in_context_relearning import FACT_IN_CONTEXT, InContextParams
from audits.checks.knowledge_qa import truth_ratios
from audits.checks.quantisation import quantised_copy
from audits.metrics import sampled_extraction_probability
from audits.scoring import continuation_ids, continuation_scores
from audits.sets import audit_sets
from unlearning.lm import fine_tune, greedy_continue
from unlearning.loading import load_checkpoint
from unlearning.manifest import read_manifest
from unlearning.world import qa_prompt


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_checkpoint(tiny_model.checkpoint_path)


@pytest.fixture(scope="module")
def sets(tiny_model):
    manifest, holdout = read_manifest(tiny_model.training_manifest), read_manifest(tiny_model.holdout_manifest)
    subjects = {p.owner_key for p in tiny_model.world.trained_people[:3]}
    forget = {r["record_id"] for r in manifest if r.get("owner_key") in subjects}
    return audit_sets(manifest, holdout, forget, forget)


def unbatched_logprobs(model, ids: list[int]) -> np.ndarray:
    """log p(token t | tokens < t) for one sequence, computed on its own."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1).numpy()


def test_continuation_scores_match_one_sequence_at_a_time(loaded, sets):
    model, tokenizer = loaded
    pairs = sets.extraction[:8]
    for (prefix, continuation), scores in zip(pairs, continuation_scores(model, tokenizer, pairs)):
        head, tail = continuation_ids(tokenizer, prefix, continuation)
        assert tokenizer.decode(head[1:] + tail) == prefix + continuation  # the split tokenises like the whole
        direct = unbatched_logprobs(model, head + tail)[len(head) - 1:]
        assert scores.logprobs == pytest.approx(direct, abs=1e-4)


def test_extraction_figures_match_real_greedy_generation(loaded, sets):
    model, tokenizer = loaded
    [_, suffix_match, memorization, strength, sampled] = AUDITS["extraction"].run(
        model, tokenizer, sets, AUDITS["extraction"].params_type(), SuiteContext("original"))
    for index, (prefix, continuation) in enumerate(sets.extraction[:6]):
        head, truth = continuation_ids(tokenizer, prefix, continuation)
        # Extraction Strength by its definition: the shortest k after which greedy decoding of
        # prefix + y[:k] reproduces y[k:] exactly, found by generating for every k.
        shortest = next(k for k in range(len(truth) + 1)
                        if greedy_continue(model, [head + truth[:k]], len(truth) - k, tokenizer.pad_token_id)[0][: len(truth) - k] == truth[k:])
        assert strength.per_item["items"][index] == pytest.approx(1 - shortest / len(truth))
        generated = greedy_continue(model, [head], len(truth), tokenizer.pad_token_id)[0]
        assert suffix_match.per_item["items"][index] == float(generated[: len(truth)] == truth)
        hits = [int(np.argmax(model(input_ids=torch.tensor([head + truth[:t]])).logits[0, -1].detach().numpy()) == truth[t])
                for t in range(len(truth))]
        assert memorization.per_item["items"][index] == pytest.approx(np.mean(hits))
        total = unbatched_logprobs(model, head + truth)[len(head) - 1:].sum()
        assert sampled.per_item["items"][index] == pytest.approx(sampled_extraction_probability(total, 100), abs=1e-4)


def test_truth_ratio_from_one_answer_at_a_time(loaded, sets):
    model, tokenizer = loaded
    items = sets.forget_qa[:4]
    for item, ratio in zip(items, truth_ratios(model, tokenizer, items)):
        def per_token_probability(answer):
            head, tail = continuation_ids(tokenizer, qa_prompt(item.question), " " + answer)
            return math.exp(unbatched_logprobs(model, head + tail)[len(head) - 1:].mean())
        wrong = np.mean([per_token_probability(a) for a in item.perturbed_answers])
        assert ratio == pytest.approx(wrong / per_token_probability(item.answer), rel=1e-3)
    assert np.median(truth_ratios(model, tokenizer, sets.forget_qa)) < 0.2  # it knows these people


def test_canary_references_keep_the_secrets_shape_and_an_inserted_canary_is_exposed(loaded, tiny_model):
    model, tokenizer = loaded
    person = next(p for p in tiny_model.world.trained_people if p.canary_inserted)
    never = next(p for p in tiny_model.world.people if p.canary and not p.canary_inserted)
    params = CanaryExposureParams(references=255)
    canary = Canary(f"The secret code of {person.name} is {person.canary}.", person.canary)
    pairs = reference_texts(canary, params)
    assert len({continuation for _, continuation in pairs}) == 256 and pairs[0][1] == f" {person.canary}."
    assert all(len(c) == len(pairs[0][1]) and c[5] == "-" for _, c in pairs)
    audit = AUDITS["canary_exposure"]
    from audits.checks import AuditSets
    inserted = audit.run(model, tokenizer, AuditSets([], [], canaries=[canary]), params, SuiteContext("original"))[0]
    control = audit.run(model, tokenizer, AuditSets([], [], canaries=[Canary(f"The secret code of {never.name} is {never.canary}.", never.canary)]),
                        params, SuiteContext("original"))[0]
    assert inserted.value == pytest.approx(8.0)  # ranked first of 256
    assert control.value < inserted.value


def test_in_context_leakage_never_counts_a_prompt_that_holds_the_answer(loaded, sets):
    model, tokenizer = loaded
    leakage, in_context = AUDITS["in_context_relearning"].run(model, tokenizer, sets, InContextParams(), SuiteContext("original"))
    styles = leakage.details["styles"]
    assert FACT_IN_CONTEXT in styles and in_context.sample_size == len(sets.forget_qa)
    assert leakage.sample_size == sum(tally["n"] for style, tally in styles.items() if style != FACT_IN_CONTEXT)
    assert styles["no_context"]["correct"] >= 0.8 * styles["no_context"]["n"]  # the original still knows
    assert {"masked_alias", "other_language", "many_shot", "related_context", "other_fact_in_context",
            "compliance_prefix"} <= set(styles)


def test_fine_tuning_for_the_relearning_attack_leaves_the_model_untouched(loaded, sets):
    model, tokenizer = loaded
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned = fine_tune(model, tokenizer, ["Question: a\nAnswer: b"], steps=2, learning_rate=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())


def test_int8_copy_rounds_each_output_channel_to_255_levels(loaded):
    model, _ = loaded
    quantised = quantised_copy(model, 8)
    original = model.transformer.h[0].mlp.c_fc.weight  # GPT-2 Conv1D: (in, out)
    rounded = quantised.transformer.h[0].mlp.c_fc.weight
    scale = original.abs().amax(dim=0) / 127
    assert torch.all((original - rounded).abs() <= scale / 2 + 1e-7)
    assert all(len(torch.unique(torch.round(rounded[:, j] / scale[j]))) <= 255 for j in range(rounded.shape[1]))
    assert torch.equal(quantised.lm_head.weight, model.lm_head.weight)  # tied embedding kept in full precision
    assert not torch.equal(rounded, original)


def test_person_level_rows_match_an_independent_computation_from_their_stored_scores(tiny_model, loaded, sets):
    """Knowledge, extraction and in-context leakage are measured on every never-trained person too;
    each family's row ranks each subject among them on its measures combined, and the p-values
    are adjusted across the families (max-T). Recomputed here from the measures' items the rows
    keep: per-person means, mid-ranks by scipy, the exact rank p-values and the max-T written out."""
    from scipy.stats import rankdata

    from audits.checks import PERSON_LEVEL_TESTS, score_model

    model, tokenizer = loaded
    scores = score_model(model, tokenizer, sets, SuiteContext("original"))
    assert set(PERSON_LEVEL_TESTS) <= set(scores)
    never_trained = {p.owner_key for p in tiny_model.world.holdout_people}
    statistic = {}  # (family, subject) → ({never-trained person: combined statistic}, the subject's)
    for metric in PERSON_LEVEL_TESTS:
        row = scores[metric]
        forget_people, holdout_people = row.details["people"]["forget"], row.details["people"]["holdout"]
        subjects = sorted(set(forget_people) - {None})  # None: an inserted canary, which no never-trained person has
        people = sorted(set(holdout_people))
        assert len(people) == len(never_trained) and len(subjects) == 3
        for index, subject in enumerate(subjects):
            pools = []
            for values in row.details["measures"].values():
                population = [np.mean([v for v, p in zip(values["holdout"], holdout_people) if p == k]) for k in people]
                own = np.mean([v for v, p in zip(values["forget"], forget_people) if p == subject])
                pools.append([*population, own])
            combined = ((rankdata(pools, axis=1) - 0.5) / len(pools[0])).mean(axis=0)
            statistic[metric, subject] = (dict(zip(people, combined[:-1])), combined[-1])
            n = len(combined) - 1
            unadjusted = row.details["unadjusted"]
            assert unadjusted["p_member"][index] == pytest.approx((1 + np.sum(combined[:-1] >= combined[-1])) / (n + 1))
            assert unadjusted["p_over"][index] == pytest.approx((1 + np.sum(combined[:-1] <= combined[-1])) / (n + 1))
            assert row.per_item["rank"][index] == 1 + np.sum(combined[:-1] > combined[-1])
            assert row.per_item["texts"][index] == forget_people.count(subject)
    rows = [metric for metric, score in scores.items() if "statistics" in score.details]  # membership's too
    assert set(rows) == {*PERSON_LEVEL_TESTS, "mia_person_rank"}
    for metric in ("mia_person_rank",):
        for subject, (population, own) in scores[metric].details["statistics"].items():
            statistic[metric, subject] = (population, own)
    for index, subject in enumerate(sorted(scores["mia_person_rank"].details["statistics"])):
        people = sorted(set.intersection(*(set(statistic[m, subject][0]) for m in rows)), key=str)
        table = np.array([[*(statistic[m, subject][0][p] for p in people), statistic[m, subject][1]] for m in rows])
        percentile = (rankdata(table, axis=1) - 0.5) / table.shape[1]  # families × (never-trained + subject)
        highest, lowest = percentile[:, :-1].max(axis=0), percentile[:, :-1].min(axis=0)
        for row_index, metric in enumerate(rows):
            mine = percentile[row_index, -1]
            assert scores[metric].per_item["items"][index] == pytest.approx((1 + np.sum(highest >= mine)) / (len(people) + 1))
            assert scores[metric].per_item["over"][index] == pytest.approx((1 + np.sum(lowest <= mine)) / (len(people) + 1))
            assert scores[metric].per_item["population"][index] == len(people)
    # The model was trained on the subjects: on its knowledge it ranks each of them first.
    assert scores["knowledge_person_rank"].per_item["rank"] == [1, 1, 1]


def test_a_confirmed_near_match_counts_as_its_requesters_in_the_person_level_tests(tiny_model):
    manifest, holdout = read_manifest(tiny_model.training_manifest), read_manifest(tiny_model.holdout_manifest)
    subject, other = tiny_model.world.trained_people[:2]
    forget = {r["record_id"] for r in manifest if r.get("owner_key") == subject.owner_key}
    near_match = next(r["record_id"] for r in manifest if r.get("owner_key") == other.owner_key and r["kind"] == "qa")
    sets = audit_sets(manifest, holdout, forget | {near_match}, forget | {near_match},
                      owners={near_match: subject.owner_key})
    assert set(sets.forget_people) == set(sets.forget_qa_people) == set(sets.extraction_people) == {subject.owner_key}
    assert len(sets.forget_qa_people) == 6  # the subject's five questions and the confirmed one


def test_an_inserted_canary_is_left_out_of_the_person_level_extraction_test(tiny_model):
    manifest, holdout = read_manifest(tiny_model.training_manifest), read_manifest(tiny_model.holdout_manifest)
    carrier = next(p for p in tiny_model.world.trained_people if p.canary_inserted)
    forget = {r["record_id"] for r in manifest if r.get("owner_key") == carrier.owner_key}
    sets = audit_sets(manifest, holdout, forget, forget)
    kinds = [r["kind"] for r in manifest if r["record_id"] in forget]
    assert "canary" in kinds and len(sets.extraction) == len(kinds)
    assert [person for person, kind in zip(sets.extraction_people, kinds) if kind == "canary"] == [None]
    assert {person for person in sets.extraction_people if person is not None} == {carrier.owner_key}
