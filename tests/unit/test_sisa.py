"""SISA on a tiny world's GPT-2 shards: placement, lineage evidence, deletion plans and their
execution, and the served ensemble.

Lineage claims are checked against what the learner logged feeding to its optimizer and against
what the engine asked of it (a recording learner), never against what it was meant to train on.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from unlearning.ensemble import EnsembleCausalLM
from unlearning.loading import load_checkpoint
from unlearning.numerics import torch_threads
from unlearning.store import checkpoint_sha256
from unlearning.lm import (TrainingRecipe, collate, encode, greedy_continue,
                           prompt_ids, train_tokenizer)
from unlearning.sisa import (DeletionPlan, Placement, SisaConfig, SisaLineage, assign, execute_deletion,
                             export_served_model, plan_deletion, read_served_manifest, train_sisa)
from unlearning.sisa_lm import CausalLMLearner
from unlearning.world import World, WorldConfig, qa_prompt, tokenizer_corpus

WORLD = WorldConfig(people=20, seed=1)
# Small enough to train three shards in about two seconds; the tests check mechanics, not knowledge.
RECIPE = TrainingRecipe(n_layer=2, n_head=2, n_embd=64, epochs=10, seed=1)
CONFIG = SisaConfig(shards=3, slices=3, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on shared cores threads that wait for
    each other made training fifty times slower."""
    with torch_threads(1):
        yield


class RecordingLearner:
    """A learner that passes everything on and notes what the engine asked of it."""

    def __init__(self, learner):
        self.learner, self.name, self.schedule = learner, learner.name, learner.schedule
        self.initialised: list[int] = []
        self.loaded: list[Path] = []
        self.trained_on: list[set[str]] = []

    def hyperparameters(self):
        return self.learner.hyperparameters()

    def initial_state(self, seed):
        self.initialised.append(seed)
        return self.learner.initial_state(seed)

    def train_slice(self, state, records, seed):
        self.trained_on.append({r["record_id"] for r in records})
        return self.learner.train_slice(state, records, seed)

    def threads(self):
        return self.learner.threads()

    def pinned_threads(self, threads):
        return self.learner.pinned_threads(threads)

    def device_description(self):
        return self.learner.device_description()

    def save(self, state, directory):
        self.learner.save(state, directory)

    def load(self, directory):
        self.loaded.append(Path(directory))
        return self.learner.load(directory)


@pytest.fixture(scope="module")
def world():
    return World.generate(WORLD)


@pytest.fixture(scope="module")
def records(world):
    return [record.as_json() for record in world.training_records()]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tokenizer_corpus(WORLD.seed), RECIPE.vocab_size)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("sisa-store")


@pytest.fixture(scope="module")
def lineage(records, tokenizer, store):
    return train_sisa(records, CausalLMLearner(tokenizer, RECIPE, CONFIG), CONFIG, store)


@dataclass
class Deletion:
    deleted: set[str]
    plan: DeletionPlan
    store_before_plan: set[str]
    store_after_plan: set[str]
    lineage: SisaLineage
    learner: RecordingLearner
    reference: SisaLineage  # the same plan retrained from scratch


def _deleted_ids(lineage, records):
    """Two requests in one batch: a person placed after slice 0 (their shard resumes from a
    checkpoint) and one general text placed in slice 0 of another shard (its shard restarts)."""
    place = lineage.placements
    person = next(r["owner_key"] for r in records if r["owner_key"] and place[r["record_id"]].slice > 0)
    person_ids = {r["record_id"] for r in records if r["owner_key"] == person}
    person_shard = place[next(iter(person_ids))].shard
    general = next(r["record_id"] for r in records
                   if not r["owner_key"] and place[r["record_id"]].shard != person_shard and place[r["record_id"]].slice == 0)
    return person_ids | {general}


@pytest.fixture(scope="module")
def deletion(lineage, records, tokenizer, store):
    deleted = _deleted_ids(lineage, records)
    before = {p.name for p in store.iterdir()}
    plan = plan_deletion(lineage, deleted)
    after_plan = {p.name for p in store.iterdir()}
    learner = RecordingLearner(CausalLMLearner(tokenizer, RECIPE, CONFIG))
    unlearned = execute_deletion(lineage, plan, records, learner, store)
    reference = execute_deletion(lineage, plan, records, CausalLMLearner(tokenizer, RECIPE, CONFIG), store,
                                 from_scratch=True)
    return Deletion(deleted, plan, before, after_plan, unlearned, learner, reference)


def _placed_ids(lineage, shard, up_to_slice):
    return {i for i, p in lineage.placements.items() if p.shard == shard and p.slice <= up_to_slice}


def test_placement_is_deterministic_keeps_a_persons_records_together_and_never_moves(records):
    placements = assign(records, CONFIG)
    assert placements == assign(records, CONFIG)
    assert placements != assign(records, SisaConfig(shards=3, slices=3, seed=1))
    by_owner: dict[str, set[Placement]] = {}
    for record in records:
        if record["owner_key"]:
            by_owner.setdefault(record["owner_key"], set()).add(placements[record["record_id"]])
    assert by_owner and all(len(places) == 1 for places in by_owner.values())
    # Records about no one are placed one by one, so they spread over every shard and slice.
    assert {placements[r["record_id"]] for r in records if not r["owner_key"]} == {
        Placement(shard, index) for shard in range(CONFIG.shards) for index in range(CONFIG.slices)}
    newcomers = [{"record_id": "new-bio", "owner_key": "new@mail.example", "kind": "biography", "text": "x"},
                 {"record_id": "new-general", "owner_key": None, "kind": "general", "text": "y"}]
    grown = assign(newcomers + records, CONFIG)
    assert {record_id: grown[record_id] for record_id in placements} == placements


def test_hashed_shards_stay_roughly_balanced():
    placements = assign([{"record_id": f"r{i}", "owner_key": f"owner-{i}"} for i in range(4000)], SisaConfig(shards=4))
    sizes = [sum(p.shard == shard for p in placements.values()) for shard in range(4)]
    assert all(900 <= size <= 1100 for size in sizes), sizes


def test_config_needs_a_shard_and_a_slice():
    for shards, slices in ((0, 4), (4, 0)):
        with pytest.raises(ValueError):
            SisaConfig(shards=shards, slices=slices)
    with pytest.raises(ValueError, match="appears twice"):
        assign([{"record_id": "a"}, {"record_id": "a"}], CONFIG)


def test_each_slice_checkpoint_logs_the_records_its_learner_fed_it(lineage, store):
    for shard, checkpoints in enumerate(lineage.shards):
        parent = None
        for checkpoint in checkpoints:
            assert set(checkpoint.trained_record_ids) == _placed_ids(lineage, shard, checkpoint.slice)
            assert checkpoint.steps == lineage.schedule.steps_for(len(checkpoint.trained_record_ids)) > 0
            assert checkpoint.parent_sha256 == parent and checkpoint.generation == 0
            assert checkpoint_sha256(store / checkpoint.path) == checkpoint.sha256
            parent = checkpoint.sha256


def test_the_plan_is_worked_out_before_any_training(deletion, lineage):
    plan = deletion.plan
    assert deletion.store_after_plan == deletion.store_before_plan
    affected = {lineage.placements[i].shard for i in deletion.deleted}
    assert {s.shard for s in plan.shards} == affected and len(affected) == 2
    assert set(plan.unaffected_shards) == set(range(CONFIG.shards)) - affected
    for shard_plan in plan.shards:
        first_slice = min(lineage.placements[i].slice for i in shard_plan.deleted_record_ids)
        assert shard_plan.first_slice == first_slice
        resume = lineage.shards[shard_plan.shard][first_slice - 1] if first_slice else None
        assert shard_plan.resume_from_sha256 == (resume.sha256 if resume else None)
        assert shard_plan.estimated_steps > 0 and shard_plan.estimated_seconds > 0
    assert [s.first_slice > 0 for s in plan.shards].count(True) == 1  # one resumes, one restarts
    assert 0 < plan.estimated_steps < plan.full_retraining_steps
    assert DeletionPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    assert "retrain 2 of 3 shards" in plan.summary()


def test_no_remaining_checkpoint_was_trained_on_a_deleted_record(deletion):
    assert not deletion.deleted & set(deletion.lineage.placements)
    for checkpoints in deletion.lineage.shards:
        for checkpoint in checkpoints:
            assert not deletion.deleted & set(checkpoint.trained_record_ids), (checkpoint.path, checkpoint.slice)
    assert all(not deletion.deleted & records for records in deletion.learner.trained_on)


def test_unaffected_shards_keep_their_checkpoints_byte_for_byte(deletion, lineage, store):
    affected_ids = {i for s in deletion.plan.shards for i in _placed_ids(lineage, s.shard, CONFIG.slices)}
    for shard in deletion.plan.unaffected_shards:
        assert deletion.lineage.shards[shard] == lineage.shards[shard]
        for checkpoint in deletion.lineage.shards[shard]:
            assert checkpoint.generation == 0
            assert checkpoint_sha256(store / checkpoint.path) == checkpoint.sha256
    # The learner was never handed an unaffected shard's records.
    assert all(records <= affected_ids for records in deletion.learner.trained_on)


def test_an_affected_shard_resumes_from_the_checkpoint_before_its_earliest_affected_slice(deletion, lineage, store):
    resumed = next(s for s in deletion.plan.shards if s.first_slice > 0)
    restarted = next(s for s in deletion.plan.shards if s.first_slice == 0)
    old, new = lineage.shards[resumed.shard], deletion.lineage.shards[resumed.shard]
    assert new[: resumed.first_slice] == old[: resumed.first_slice]
    assert new[resumed.first_slice].parent_sha256 == resumed.resume_from_sha256 == old[resumed.first_slice - 1].sha256
    assert all(c.generation == 1 for c in new[resumed.first_slice:])
    assert deletion.learner.loaded == [store / resumed.resume_from_path]
    assert len(deletion.learner.initialised) == 1  # the restarted shard's initial model, and no other
    assert deletion.lineage.shards[restarted.shard][0].parent_sha256 is None
    assert len(deletion.learner.trained_on) == sum(CONFIG.slices - s.first_slice for s in deletion.plan.shards)


def test_executed_steps_and_records_match_the_plan(deletion):
    for shard_plan in deletion.plan.shards:
        checkpoints = deletion.lineage.shards[shard_plan.shard]
        planned = set()
        for checkpoint in checkpoints[: shard_plan.first_slice]:
            planned |= set(checkpoint.trained_record_ids)
        for slice_plan in shard_plan.slices:
            planned |= set(slice_plan.record_ids)
            checkpoint = checkpoints[slice_plan.slice]
            assert checkpoint.steps == slice_plan.estimated_steps
            assert set(checkpoint.trained_record_ids) == planned
            assert len(planned) == slice_plan.cumulative_records


def test_resuming_from_a_checkpoint_gives_the_model_a_retraining_from_scratch_gives(deletion):
    reference = deletion.reference
    assert [c[-1].sha256 for c in reference.shards] == [c[-1].sha256 for c in deletion.lineage.shards]
    for shard_plan in deletion.plan.shards:
        assert reference.shards[shard_plan.shard][0].parent_sha256 is None
        assert all(c.generation == 1 for c in reference.shards[shard_plan.shard])


def test_unknown_or_already_deleted_ids_and_stale_plans_are_rejected(deletion, lineage, records, tokenizer, store):
    known = sorted(deletion.deleted)[0]
    with pytest.raises(ValueError, match="no-such-record"):
        plan_deletion(lineage, [known, "no-such-record"])
    with pytest.raises(ValueError, match=known):
        plan_deletion(deletion.lineage, [known])
    with pytest.raises(ValueError):
        plan_deletion(lineage, [])
    with pytest.raises(ValueError, match="another lineage"):
        execute_deletion(deletion.lineage, deletion.plan, records, CausalLMLearner(tokenizer, RECIPE, CONFIG), store)


def test_a_lineage_survives_json(deletion):
    restored = SisaLineage.from_dict(json.loads(json.dumps(deletion.lineage.as_dict())))
    assert restored == deletion.lineage and restored.sha256() == deletion.lineage.sha256()


def test_the_served_ensemble_is_pinned_and_loads_as_one_model(deletion, tokenizer, store, world):
    sha256, path = export_served_model(deletion.lineage, store, tokenizer)
    assert export_served_model(deletion.lineage, store, tokenizer) == (sha256, path)  # same shards, same address
    assert checkpoint_sha256(path) == sha256
    manifest = read_served_manifest(path)
    for shard, checkpoint in zip(manifest["shards"], deletion.lineage.final_checkpoints()):
        assert shard["sha256"] == checkpoint.sha256 == checkpoint_sha256(path / shard["path"])
    model, served_tokenizer = load_checkpoint(path)
    assert isinstance(model, EnsembleCausalLM) and len(model.members) == CONFIG.shards
    prompt = prompt_ids(served_tokenizer, qa_prompt(world.qa_pairs(world.people[0])[0].question))
    assert len(greedy_continue(model, [prompt], 6, served_tokenizer.pad_token_id)[0]) == 6


def _members(lineage, store, count):
    return [AutoModelForCausalLM.from_pretrained(store / c.path).eval() for c in lineage.final_checkpoints()[:count]]


def _prompts(world, tokenizer):
    return [prompt_ids(tokenizer, qa_prompt(pair.question)) for person in world.people[:3] for pair in world.qa_pairs(person)]


def test_an_ensemble_of_one_is_its_member(lineage, store, tokenizer, world):
    (member,) = _members(lineage, store, 1)
    ensemble = EnsembleCausalLM([member]).eval()
    prompts, pad, eos = _prompts(world, tokenizer), tokenizer.pad_token_id, member.config.eos_token_id
    assert greedy_continue(ensemble, prompts, 8, pad) == greedy_continue(member, prompts, 8, pad)
    for prompt in prompts[:5]:
        batch = torch.tensor([prompt])
        with torch.no_grad():
            expected = torch.softmax(member(input_ids=batch).logits, -1)
            assert torch.allclose(torch.softmax(ensemble(input_ids=batch).logits, -1), expected, atol=1e-6)
        direct = member.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=8,
                                 do_sample=False, pad_token_id=pad, eos_token_id=eos)  # transformers' own decoding
        assert greedy_continue(ensemble, [prompt], 8, pad)[0] == direct[0, len(prompt):].tolist()


def test_an_ensemble_of_two_predicts_the_mean_of_their_probabilities(lineage, store, tokenizer, world):
    members = _members(lineage, store, 2)
    ensemble = EnsembleCausalLM(members, aggregation="token").eval()
    batch = torch.tensor([_prompts(world, tokenizer)[0]])
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(input_ids=batch).logits, -1) for m in members]).mean(0)
        output = ensemble(input_ids=batch, labels=batch)
        assert torch.allclose(torch.softmax(output.logits, -1), mean, atol=1e-6)
        expected_loss = -torch.log(mean[0, :-1].gather(-1, batch[0, 1:, None])).mean()
        assert torch.allclose(output.loss, expected_loss, atol=1e-5)


def test_the_sequence_mixture_is_the_mean_of_the_members_probabilities_of_whole_texts(lineage, store, tokenizer, world):
    members = _members(lineage, store, 3)
    ensemble = EnsembleCausalLM(members).eval()
    texts = [qa_prompt(pair.question) + " " + pair.answer for person in world.people[:4] for pair in world.qa_pairs(person)]
    batch = collate(encode(tokenizer, texts, 128), tokenizer.pad_token_id)  # right-padded: padding must not count

    def text_log_probs(model):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = batch["input_ids"][:, 1:]
        token = torch.log_softmax(logits.double(), -1).gather(-1, targets[..., None])[..., 0]
        return (token * batch["attention_mask"][:, 1:]).sum(-1)

    expected = torch.logsumexp(torch.stack([text_log_probs(m) for m in members]), 0) - math.log(len(members))
    assert torch.allclose(text_log_probs(ensemble), expected, atol=1e-4)
