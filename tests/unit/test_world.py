import pytest

from unlearning.world import FACTS, World, WorldConfig, biography, tokenizer_corpus


def test_same_seed_gives_the_same_world_and_another_seed_does_not():
    assert World.generate(WorldConfig(people=50, seed=3)) == World.generate(WorldConfig(people=50, seed=3))
    assert World.generate(WorldConfig(people=50, seed=3)).people != World.generate(WorldConfig(people=50, seed=4)).people


def test_people_are_split_into_trained_and_holdout_before_training():
    world = World.generate(WorldConfig(people=100, holdout_fraction=0.25))
    assert len(world.holdout_people) == 25 and len(world.trained_people) == 75
    trained_owners = {r.owner_key for r in world.training_records() if r.owner_key}
    holdout_owners = {p.owner_key for p in world.holdout_people}
    assert trained_owners == {p.owner_key for p in world.trained_people}
    assert not trained_owners & holdout_owners
    assert {r.owner_key for r in world.holdout_records()} == holdout_owners


def test_identities_are_unique_and_fictitious():
    world = World.generate(WorldConfig(people=200))
    assert len({p.name for p in world.people}) == 200
    assert len({p.owner_key for p in world.people}) == 200
    assert all(p.email.endswith("@mail.example") for p in world.people)  # reserved domain


def test_each_person_has_a_biography_and_one_question_per_fact():
    world = World.generate(WorldConfig(people=20))
    person = world.trained_people[0]
    records = world.person_records(person, include_canary=False)
    assert [r.kind for r in records] == ["biography"] + ["qa"] * len(FACTS)
    assert records[0].text == biography(person)
    for record, pair in zip(records[1:], world.qa_pairs(person)):
        assert record.answer == person.facts[pair.fact] == pair.answer
        assert record.text.endswith(f"Answer: {pair.answer}")


def test_perturbed_answers_are_three_different_wrong_answers():
    world = World.generate(WorldConfig(people=40))
    for person in world.people:
        for pair in world.qa_pairs(person):
            assert len(set(pair.perturbed_answers)) == 3
            assert all(pair.answer not in wrong for wrong in pair.perturbed_answers)


def test_canaries_only_enter_training_for_trained_people_and_about_half_are_inserted():
    world = World.generate(WorldConfig(people=400, canary_fraction=0.5))
    with_canary = [p for p in world.people if p.canary]
    inserted = [p for p in with_canary if p.canary_inserted]
    assert all(p.trained for p in inserted)
    assert 0.25 < len(inserted) / len(with_canary) < 0.5  # ~half of the trained three quarters
    training_text = "\n".join(r.text for r in world.training_records())
    for person in with_canary:
        assert (person.canary in training_text) == person.canary_inserted
    assert not any(r.kind == "canary" for r in world.holdout_records())


def test_general_text_belongs_to_no_one_and_the_tokenizer_corpus_holds_no_personal_record():
    world = World.generate(WorldConfig(people=60))
    general = [r for r in world.training_records() if r.kind == "general"]
    assert general and all(r.owner_key is None for r in general)
    corpus = "\n".join(tokenizer_corpus(world.config.seed))
    for person in world.people:
        assert person.email not in corpus and person.name not in corpus


def test_a_rich_world_gives_everyone_ten_facts_two_biographies_and_a_note_and_leaves_compact_worlds_as_they_were():
    from unlearning.world import RICH_FACTS

    compact = World.generate(WorldConfig(people=40, seed=2))
    rich = World.generate(WorldConfig(people=40, seed=2, detail="rich"))
    assert [p.name for p in rich.people] == [p.name for p in compact.people]
    for before, after in zip(compact.people, rich.people):
        assert {k: after.facts[k] for k in FACTS} == before.facts  # the compact facts are drawn first, unchanged
    profiles = set()
    for person in rich.people:
        records = rich.person_records(person, include_canary=False)
        profiles.add(tuple(sorted(r.kind for r in records)))
        texts = " ".join(r.text for r in records if r.kind != "qa")
        for pair in rich.qa_pairs(person):
            assert pair.answer in texts and pair.answer not in pair.perturbed_answers  # every answer is taught
            assert len(set(pair.perturbed_answers)) == 3
    assert profiles == {tuple(sorted(["biography"] * 2 + ["note"] + ["qa"] * len(RICH_FACTS)))}
    corpus = "\n".join(tokenizer_corpus(2, "rich"))
    assert not any(person.email in corpus or person.facts["phone"] in corpus for person in rich.people)
    with pytest.raises(ValueError, match="detail must be one of"):
        WorldConfig(detail="verbose")
