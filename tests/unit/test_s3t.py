"""S3T: every claim about what an adapter saw is checked against the record ids its own training
loop logged, never against the placements it was meant to follow alone."""

import json
import time

import pytest

from unlearning.lm import TrainingRecipe, greedy_generate, train_tokenizer
from unlearning.numerics import torch_threads
from unlearning.s3t import (
    S3TConfig,
    S3TDeletionPlan,
    S3TLineage,
    choose_orders,
    export_served_model,
    plan_deletion,
    train_s3t,
)
from unlearning.s3t import execute_deletion as execute_with
from unlearning.s3t_lm import S3TAdapterTrainer, load_s3t_model, train_base_model
from unlearning.store import checkpoint_sha256
from unlearning.world import World, WorldConfig, qa_prompt, tokenizer_corpus

SEED = 3
CONFIG = S3TConfig(shards=2, slices=3, orders_per_shard=3, epochs_per_slice=3, batch_size=16, seed=SEED)


def execute_deletion(lineage, plan, records, store):
    """The engine's deletion, with the adapter trainer it needs when orders are exhausted."""
    return execute_with(lineage, plan, records, S3TAdapterTrainer(lineage.base, lineage.config, store))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # One thread: these models are too small to gain from two, and on a busy machine a second
    # OpenMP thread waiting for a preempted peer made this module twenty times slower.
    with torch_threads(1):
        world = World.generate(WorldConfig(people=20, seed=SEED))
        records = [record.as_json() for record in world.training_records()]
        tokenizer = train_tokenizer(tokenizer_corpus(SEED), 3000)
        store = tmp_path_factory.mktemp("s3t-store")
        base = train_base_model(records, tokenizer, TrainingRecipe(n_layer=2, n_embd=64, epochs=10, seed=SEED), store)
        yield world, records, store, train_s3t(records, base, CONFIG, S3TAdapterTrainer(base, CONFIG, store))


def owners_by_slice(lineage: S3TLineage, records: list[dict], shard: int) -> dict[int, list[str]]:
    """The owners placed in each slice of a shard, in a fixed order."""
    owners: dict[int, list[str]] = {}
    for record in sorted(records, key=lambda r: r["record_id"]):
        place = lineage.placements.get(record["record_id"])
        if place and place.shard == shard and record["owner_key"] not in owners.get(place.slice, []):
            owners.setdefault(place.slice, []).append(record["owner_key"])
    return owners


def ids_of(records: list[dict], owner: str) -> list[str]:
    return [r["record_id"] for r in records if r.get("owner_key") == owner]


def saw(adapter, deleted) -> set[str]:
    return set(adapter.trained_record_ids) & set(deleted)


def test_a_person_sits_in_one_slice_of_one_shard(trained):
    _, records, _, lineage = trained
    owners = {r["owner_key"] for r in records if r.get("owner_key")}
    assert all(len({lineage.placements[i] for i in ids_of(records, owner)}) == 1 for owner in owners)


def test_orders_are_rotations_that_put_every_slice_last_once():
    orders = choose_orders(4, 4)
    assert sorted(order[-1] for order in orders) == [0, 1, 2, 3]
    assert sorted(order[0] for order in orders) == [0, 1, 2, 3]
    assert choose_orders(4, 2) == ((0, 1, 2, 3), (2, 3, 0, 1))
    with pytest.raises(ValueError):
        choose_orders(3, 4)


def test_the_base_holds_only_text_about_no_one_and_each_adapter_logged_its_prefix_of_slices(trained):
    _, records, store, lineage = trained
    assert set(lineage.base.record_ids) == {r["record_id"] for r in records if not r.get("owner_key")}
    assert not set(lineage.base.record_ids) & set(lineage.placements)
    for state in lineage.shards:
        for order in state.orders:
            for adapter in order.adapters:
                prefix = set(order.slices[: adapter.position + 1])
                expected = {i for i, place in lineage.placements.items()
                            if place.shard == state.shard and place.slice in prefix}
                assert set(adapter.trained_record_ids) == expected
                assert checkpoint_sha256(store / adapter.path) == adapter.sha256
    assert S3TLineage.from_dict(json.loads(json.dumps(lineage.as_dict()))) == lineage


def test_a_deletion_switches_adapters_off_without_training(trained):
    _, records, store, lineage = trained
    owners = owners_by_slice(lineage, records, shard=0)
    deleted_slice, owner = next((s, names[0]) for s, names in sorted(owners.items()))
    deleted = ids_of(records, owner)
    plan = plan_deletion(lineage, deleted)
    assert S3TDeletionPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    assert not plan.retraining_needed and "no retraining" in plan.summary()

    started = time.perf_counter()
    after = execute_deletion(lineage, plan, records, store)
    seconds = time.perf_counter() - started

    state, before = after.shards[0], lineage.shards[0]
    training_seconds = sum(a.seconds for order in before.orders for a in order.adapters)
    assert after.deletions[-1].training_steps == 0 and seconds < training_seconds / 10
    switched_off = {(s.order, s.position) for s in plan.shards[0].switched_off}
    assert switched_off == {(o, p) for o, order in enumerate(before.orders)
                            for p in range(order.slices.index(deleted_slice), CONFIG.slices)}
    keeps = [order.slices.index(deleted_slice) for order in before.orders]
    assert state.active_adapters == max(keeps) == keeps[state.served_order]
    assert state.served_adapters and all(not saw(adapter, deleted) for adapter in state.served_adapters)
    assert state.retired_slices == (deleted_slice,)
    assert state.orders == before.orders  # every adapter as it was: switched off, not retrained
    assert after.shards[1] == lineage.shards[1]  # same adapters, same sha256
    assert not set(deleted) & set(after.placements)


def test_exhausted_orders_retrain_the_shard_without_any_deleted_record(trained):
    _, records, store, lineage = trained
    owners = owners_by_slice(lineage, records, shard=1)
    assert len(owners) == CONFIG.slices, "the test world must fill every slice of shard 1"
    deleted: list[str] = []
    for slice_index, names in sorted(owners.items()):
        plan = plan_deletion(lineage, ids_of(records, names[0]))
        if plan.retraining_needed:
            break
        lineage = execute_deletion(lineage, plan, records, store)
        deleted += plan.deleted_record_ids
    assert slice_index == max(owners) and plan.shards[0].active_adapters == 0, "only the last slice exhausts the orders"
    assert "retrains" in plan.summary() and plan.shards[0].estimated_steps > 0
    assert plan.shards[0].estimated_seconds > 0

    staying = next(i for i, place in lineage.placements.items()
                   if place.shard == 1 and i not in plan.deleted_record_ids)
    with pytest.raises(ValueError, match=f"not given: {staying}"):
        execute_deletion(lineage, plan, [r for r in records if r["record_id"] != staying], store)
    after = execute_deletion(lineage, plan, records, store)
    deleted += plan.deleted_record_ids
    state = after.shards[1]
    assert after.deletions[-1].retrained_shards == (1,)
    assert after.deletions[-1].training_steps == plan.shards[0].estimated_steps
    assert state.retired_slices == () and state.active_adapters == CONFIG.slices
    assert all(not saw(adapter, deleted) for order in state.orders for adapter in order.adapters)
    assert after.shards[0] == lineage.shards[0]
    assert all(lineage.placements[i] == place for i, place in after.placements.items())  # nothing moved


def test_unknown_base_and_already_deleted_ids_are_refused(trained):
    _, records, store, lineage = trained
    with pytest.raises(ValueError, match="no-such-record"):
        plan_deletion(lineage, ["no-such-record", next(iter(lineage.placements))])
    with pytest.raises(ValueError, match="frozen base.*general-0000"):
        plan_deletion(lineage, ["general-0000"])
    first = next(iter(lineage.placements))
    after = execute_deletion(lineage, plan_deletion(lineage, [first]), records, store)
    with pytest.raises(ValueError, match=f"already deleted.*{first}"):
        plan_deletion(after, [first])


def test_a_plan_made_before_another_deletion_is_refused(trained):
    _, records, store, lineage = trained
    owners = owners_by_slice(lineage, records, shard=0)
    first, second = (owners[s][0] for s in sorted(owners)[:2])
    stale = plan_deletion(lineage, ids_of(records, second))
    after = execute_deletion(lineage, plan_deletion(lineage, ids_of(records, first)), records, store)
    with pytest.raises(ValueError, match="another state"):
        execute_deletion(after, stale, records, store)


def test_the_served_model_loads_and_generates(trained):
    world, records, store, lineage = trained
    owners = owners_by_slice(lineage, records, shard=0)
    owner = owners[min(owners)][0]
    after = execute_deletion(lineage, plan_deletion(lineage, ids_of(records, owner)), records, store)
    sha256, path = export_served_model(after, store)
    assert checkpoint_sha256(path) == sha256
    manifest = json.loads((path / "s3t.json").read_text())
    assert [(s["served_order"], len(s["adapters"])) for s in manifest["shards"]] == \
        [(s.served_order, s.active_adapters) for s in after.shards]
    model, tokenizer = load_s3t_model(path)
    assert len(model.members) == CONFIG.shards
    questions = [qa_prompt(pair.question) for pair in world.qa_pairs(world.trained_people[0])]
    answers = greedy_generate(model, tokenizer, questions, 8)
    assert len(answers) == len(questions) and all(isinstance(a, str) for a in answers)


def test_the_same_seed_trains_the_same_adapters(trained):
    _, records, store, lineage = trained
    small = S3TConfig(shards=1, slices=2, orders_per_shard=1, epochs_per_slice=1, seed=SEED)
    personal = [r for r in records if r.get("owner_key")][:20]

    def adapter_shas(records_in_some_order):
        trained_again = train_s3t(records_in_some_order, lineage.base, small, S3TAdapterTrainer(lineage.base, small, store))
        return [a.sha256 for state in trained_again.shards for order in state.orders for a in order.adapters]

    assert adapter_shas(personal) == adapter_shas(personal[::-1])
