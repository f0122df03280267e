"""ECO (unlearning.serving.filters.eco) on the tiny world's model: where the corruption lands, that it
fires on the prompt only and leaves every other row and step bit for bit, and that the tuned strength
makes trained people's answers look like never-trained people's."""

import copy
from collections import defaultdict

import pytest
import torch
from transformers import DynamicCache

from tests.conftest import one_torch_thread
from unlearning.ensemble import EnsembleCausalLM
from unlearning.lm import greedy_generate, load_pretrained, prompt_ids
from unlearning.serving.filters import EcoParams
from unlearning.serving.filters.eco import (
    CORRUPTIONS, answer_losses, corrupted_prompts, embedding_modules, entity_positions, forget_objective,
    search_strength, tune_strength,
)
from unlearning.world import answer_is_correct, qa_prompt

FORGET_PEOPLE = 8  # 40 questions: enough for the search's objective, small enough for two shared cores


@pytest.fixture(scope="module")
def tiny(request):
    """The tiny world's model, on one thread (trained here too, when no earlier test needed it: on two
    shared cores, two threads trained it four times slower than one)."""
    with one_torch_thread():
        tiny_model = request.getfixturevalue("tiny_model")
        model, tokenizer = load_pretrained(tiny_model.checkpoint_path)
        yield model, tokenizer, tiny_model.world


def questions(world, people):
    """(prompts, answers, names) of the people's questions, asked as they were trained."""
    pairs = [(person, pair) for person in people for pair in world.qa_pairs(person)]
    return ([qa_prompt(pair.question) for _, pair in pairs], [pair.answer for _, pair in pairs],
            [person.name for person, _ in pairs])


def corrupted_greedy(model, tokenizer, prompts, positions, params, strength):
    """Greedy answers with the prompts corrupted: greedy_generate batches prompts by length, so each
    batch of equal-length prompts gets its own rows' positions (in input order within a length)."""
    by_length = defaultdict(list)
    for index, prompt in enumerate(prompts):
        by_length[len(prompt_ids(tokenizer, prompt))].append(index)
    answers = [""] * len(prompts)
    for indices in by_length.values():
        with corrupted_prompts(model, [positions[i] for i in indices], params, strength):
            for index, answer in zip(indices, greedy_generate(model, tokenizer, [prompts[i] for i in indices], 12)):
                answers[index] = answer
    return answers


def test_entity_positions_are_the_names_tokens_else_all_but_the_last(tiny):
    _, tokenizer, world = tiny
    person = world.trained_people[0]
    prompt = qa_prompt(world.qa_pairs(person)[0].question)
    ids = prompt_ids(tokenizer, prompt)
    assert ids[0] == tokenizer.bos_token_id and ids[1:] == tokenizer(prompt, add_special_tokens=False)["input_ids"]

    positions = entity_positions(tokenizer, prompt, [person.name])
    assert positions == list(range(positions[0], positions[-1] + 1)) and positions[0] >= 1
    assert tokenizer.decode([ids[i] for i in positions]).strip() == person.name
    assert person.name not in tokenizer.decode(ids[: positions[0]] + ids[positions[-1] + 1 :])

    def named(text, names):
        return tokenizer.decode([prompt_ids(tokenizer, text)[i] for i in entity_positions(tokenizer, text, names)])

    assert named(prompt.upper(), [person.name]).strip() == person.name.upper()  # any case
    initial = f"{person.name[0]}. {person.name.split()[1]}"
    both = named(f"{person.name} or {initial}?", [person.name, initial])
    assert both.split() == [*person.name.split(), *initial.split()]

    everything_but_last = list(range(1, len(ids) - 1))
    assert entity_positions(tokenizer, prompt, ["Nobody Atall", ""]) == everything_but_last
    assert entity_positions(tokenizer, prompt, [person.name.split()[0][:-1]]) == everything_but_last  # whole words only


def test_each_corruption_does_what_it_says():
    tokens = torch.tensor([[1.0, -5.0, 3.0, 0.5], [2.0, 2.5, -0.1, -4.0], [0.3, 0.2, 0.1, 0.0]])
    unused = torch.Generator().manual_seed(0)
    zeroed = CORRUPTIONS["zero_top_k"](tokens, [0, 1], EcoParams(corruption="zero_top_k"), 0.5, unused)
    assert torch.equal(zeroed, torch.tensor([[1.0, 0.0, 0.0, 0.5], [2.0, 0.0, -0.1, 0.0], [0.3, 0.2, 0.1, 0.0]]))
    flipped = CORRUPTIONS["flip_sign_top_k"](tokens, [1], EcoParams(corruption="flip_sign_top_k", dims=1), 0.9, unused)
    assert torch.equal(flipped, torch.tensor([[1.0, -5.0, 3.0, 0.5], [2.0, 2.5, -0.1, 4.0], [0.3, 0.2, 0.1, 0.0]]))
    assert tokens[0, 1] == -5.0  # a new tensor; the input stays as it was

    embeddings = torch.randn(2, 400, 64, generator=torch.Generator().manual_seed(1)) * 3  # (batch, tokens, dims)
    params, chosen = EcoParams(dims=16), list(range(0, 400, 2))
    noisy = CORRUPTIONS["noise_first_n"](embeddings, chosen, params, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(noisy[:, 1::2], embeddings[:, 1::2]) and torch.equal(noisy[..., 16:], embeddings[..., 16:])
    rms = embeddings[:, ::2].pow(2).mean(-1, keepdim=True).sqrt()
    standardised = (noisy - embeddings)[:, ::2, :16] / (0.5 * rms)
    assert abs(standardised.mean().item()) < 0.05 and abs(standardised.std().item() - 1) < 0.05
    again = CORRUPTIONS["noise_first_n"](embeddings, chosen, params, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(noisy, again)


def test_only_flagged_rows_are_corrupted_and_the_hooks_go_away(tiny):
    model, tokenizer, world = tiny
    person = world.trained_people[1]
    prompt = qa_prompt(world.qa_pairs(person)[0].question)
    batch = torch.tensor([prompt_ids(tokenizer, prompt)] * 2)
    flagged = entity_positions(tokenizer, prompt, [person.name])
    with torch.no_grad():
        plain = model(input_ids=batch).logits
        with corrupted_prompts(model, [flagged, []], EcoParams(), 2.0):
            hooked = model(input_ids=batch).logits
        assert not torch.allclose(hooked[0], plain[0], atol=1e-3)
        assert torch.equal(hooked[1], plain[1])
        assert torch.equal(model(input_ids=batch).logits, plain)

        with pytest.raises(ValueError, match="positions for 1 prompts"):
            with corrupted_prompts(model, [flagged], EcoParams(), 2.0):
                model(input_ids=batch)
        assert not model.get_input_embeddings()._forward_hooks
        assert torch.equal(model(input_ids=batch).logits, plain)


def test_a_cached_decode_step_is_not_corrupted(tiny):
    model, tokenizer, world = tiny
    ids = torch.tensor([prompt_ids(tokenizer, qa_prompt(world.qa_pairs(world.trained_people[2])[1].question))])
    every_position_but_the_last = list(range(ids.size(1) - 1))  # position 0 too, which a one-token step would be
    cache = DynamicCache()  # the second argument, whatever this transformers version names it
    with torch.no_grad():
        with corrupted_prompts(model, [every_position_but_the_last], EcoParams(), 2.0):
            prefill = model(ids, cache, use_cache=True).logits
            token = prefill[:, -1:].argmax(-1)
            hooked_step = model(token, copy.deepcopy(cache), use_cache=True).logits
        plain_step = model(token, copy.deepcopy(cache), use_cache=True).logits
        assert not torch.allclose(prefill, model(ids).logits, atol=1e-3)  # the prefill was corrupted
    assert torch.equal(hooked_step, plain_step)


def test_the_ensemble_sees_the_same_corrupted_prompt_at_every_step(tiny):
    """The ensemble recomputes the whole sequence at each step, so a prompt's corruption must not
    change from call to call nor with the sequence's length; an ensemble of one then answers as the
    KV-cached model does."""
    model, tokenizer, world = tiny
    assert embedding_modules(model) == [model.transformer.wte]
    other = copy.deepcopy(model)
    assert embedding_modules(EnsembleCausalLM([model, other])) == [model.transformer.wte, other.transformer.wte]

    prompts, answers, names = questions(world, world.trained_people[:2])
    ids = prompt_ids(tokenizer, prompts[0])
    longer = ids + tokenizer(" " + answers[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad(), corrupted_prompts(model, [entity_positions(tokenizer, prompts[0], names)], EcoParams(), 3.0):
        first, again = model(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits
        extended = model(torch.tensor([longer])).logits
    assert torch.equal(first, again) and torch.allclose(extended[:, : len(ids)], first, atol=1e-5)

    positions = [entity_positions(tokenizer, prompt, names) for prompt in prompts]
    cached = corrupted_greedy(model, tokenizer, prompts, positions, EcoParams(), 3.0)
    recomputed = corrupted_greedy(EnsembleCausalLM([model]), tokenizer, prompts, positions, EcoParams(), 3.0)
    assert recomputed == cached
    assert cached != greedy_generate(model, tokenizer, prompts, 12)  # the corruption did change answers


def test_the_search_finds_a_known_best_strength_in_ten_steps():
    for start in (0.05, 1.0, 40.0):
        best, history = search_strength(lambda strength: (strength - 3.7) ** 2, start, 10)
        assert abs(best - 3.7) < 0.2 and len(history) == 20 and min(s for s, _ in history) > 0
    capped, history = search_strength(lambda share: -share, 0.1, 10, upper=1.0)
    assert capped == 1.0 and max(s for s, _ in history) == 1.0


def test_the_tuned_strength_makes_trained_answers_look_never_trained(tiny):
    model, tokenizer, world = tiny
    prompts, answers, names = questions(world, world.trained_people[:FORGET_PEOPLE])
    strangers = questions(world, world.holdout_people)
    target = sum(answer_losses(model, tokenizer, *strangers[:2])) / len(strangers[0])
    trained = sum(answer_losses(model, tokenizer, prompts, answers)) / len(prompts)

    strength, history = tune_strength(model, tokenizer, prompts, answers, sorted(set(names)), target)
    positions = [entity_positions(tokenizer, prompt, names) for prompt in prompts]
    corrupted = sum(answer_losses(model, tokenizer, prompts, answers, positions, EcoParams(), strength)) / len(prompts)
    objective = forget_objective(model, tokenizer, prompts, answers, positions, EcoParams(), target)
    best = min(value for _, value in history)  # the weakest strength within 5% of the best measured
    assert objective(strength) == objective(strength) <= best + 0.05 * best
    assert strength == min(s for s, value in history if value <= best + 0.05 * best)
    assert trained < 0.3 < target - 1  # the model knows the trained answers, and not the strangers'
    assert abs(corrupted - target) < 0.6 * abs(trained - target)

    def accuracy(generated):
        return sum(map(answer_is_correct, generated, answers)) / len(answers)

    assert accuracy(greedy_generate(model, tokenizer, prompts, 12)) > 0.8
    assert accuracy(corrupted_greedy(model, tokenizer, prompts, positions, EcoParams(), strength)) < 0.3
