"""The serving layer on a real trained model, on each backend (transformers here; vLLM where it is
installed: `make test-vllm`): unfiltered generation is transformers' greedy generation; streaming
gives the same text; the gate, the output filter and the whole filter stack block the forgotten
person and leave everyone else's answers as they were."""

import importlib.util
import os

import pytest

from tests.conftest import one_torch_thread
from unlearning.serving.decoding import Sampling
from unlearning.serving.filters import OutputFilterParams, PromptClassifierParams
from unlearning.serving.targets import ForgetTargets, targets_from_records
from unlearning.world import answer_is_correct, qa_prompt

ANSWER = Sampling(max_new_tokens=12, stop=("\n",))


VLLM = pytest.param("vllm", marks=pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                                      reason="vLLM is not installed here: make test-vllm"))


@pytest.fixture(scope="module")
def served(tiny_model):
    from unlearning.lm import load_pretrained

    with one_torch_thread():
        model, tokenizer = load_pretrained(tiny_model.checkpoint_path)
        yield model, tokenizer


@pytest.fixture(scope="module", params=["transformers", VLLM])
def serve(request, served, tiny_model):
    """filters → a ServedModel of the tiny model on this backend."""
    from unlearning.serving.stack import ServedModel

    model, tokenizer = served
    if request.param == "transformers":
        yield lambda filters=None: ServedModel(model, tokenizer, filters)
        return
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: no spawned interpreter
    from unlearning.serving.vllm_backend import VllmBackend, input_embedding_matrix, start_engine

    engine = start_engine(tiny_model.checkpoint_path, enforce_eager=True, gpu_memory_utilization=0.1)
    backend = VllmBackend(engine, tokenizer, input_embedding_matrix(tiny_model.checkpoint_path))
    yield lambda filters=None: ServedModel(None, tokenizer, filters, backend)


@pytest.fixture(scope="module")
def world(tiny_model):
    return tiny_model.world


@pytest.fixture(scope="module")
def forgotten(world):
    return world.trained_people[0]


@pytest.fixture(scope="module")
def targets(world, forgotten) -> ForgetTargets:
    return targets_from_records(r.as_json() for r in world.person_records(forgotten, include_canary=True))


@pytest.fixture(scope="module")
def encoder():
    from unlearning.serving.encoder import sentence_encoder

    return sentence_encoder()


def questions(world, people):
    return [(qa_prompt(qa.question), qa.answer) for person in people for qa in world.qa_pairs(person)]


def test_unfiltered_generation_is_transformers_greedy_generation(served, serve, world):
    import torch

    from unlearning.lm import prompt_ids

    model, tokenizer = served
    prompts = [prompt for prompt, _ in questions(world, world.trained_people[:4])]
    ours = [g.text for g in serve().generate(prompts, ANSWER)]
    theirs = []
    for prompt in prompts:  # transformers' own decoding, one prompt at a time
        ids = torch.tensor([prompt_ids(tokenizer, prompt)])
        generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=ANSWER.max_new_tokens,
                                   do_sample=False, pad_token_id=tokenizer.pad_token_id)
        theirs.append(tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0])
    assert ours == theirs


def test_a_stream_sends_the_text_generate_returns(serve, world):
    prompt = world.trained_people[0].name  # its biography follows, many tokens long
    stream = serve().stream(prompt, Sampling(max_new_tokens=20))
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            final = done.value
            break
    whole = serve().generate([prompt], Sampling(max_new_tokens=20))[0]
    assert len(pieces) > 1  # token by token, not all at the end
    assert "".join(pieces) == final.text == whole.text
    assert final.finish_reason == whole.finish_reason


def test_sampling_follows_the_seed(serve, world):
    prompt = questions(world, world.trained_people[:1])[0][0]
    server = serve()
    hot = [Sampling(max_new_tokens=15, temperature=2.0, seed=seed) for seed in (1, 1, 2)]
    first, again, other = (server.generate([prompt], s)[0].text for s in hot)
    assert first == again
    assert first != other


def test_the_gate_flags_the_target_by_name_alias_misspelling_and_language_but_no_one_else(world, forgotten, targets, encoder):
    from unlearning.serving.filters.prompt_classifier import PromptClassifier

    gate = PromptClassifier(targets, encoder, PromptClassifierParams())
    first, last = forgotten.name.split(" ", 1)
    about_them = [qa_prompt(f"Where does {forgotten.name} live?"), f"Tell me about {first[0]}. {last}.",
                  f"Wo wurde {forgotten.name} geboren?", f"What does {forgotten.name[:-1]}x do for a living?"]
    others = [prompt for prompt, _ in questions(world, [p for p in world.trained_people[1:] if p.name != forgotten.name])]
    assert all(flag is not None and flag.target == 0 for flag in gate.classify(about_them))
    assert not any(gate.classify(others + ["The weather in the hills was cold that winter."]))


def test_calibration_keeps_the_false_positive_rate_within_its_budget(world, forgotten, targets, encoder):
    from unlearning.serving.filters.prompt_classifier import PromptClassifier, calibrate

    gate = PromptClassifier(targets, encoder, PromptClassifierParams(max_false_positive_rate=0.05))
    positives = [prompt for prompt, _ in questions(world, [forgotten])]
    negatives = [prompt for prompt, _ in questions(world, world.trained_people[1:])]
    result = calibrate(gate, positives, negatives)
    # Independently: count the negatives the gate flags at the chosen threshold.
    flagged = sum(1 for flag in gate.classify(negatives, result.threshold) if flag is not None)
    assert result.flagged_negatives == flagged <= 0.05 * len(negatives)
    assert result.true_positive_rate == 1.0
    low, high = result.as_dict()["false_positive_interval"]
    assert low <= result.false_positive_rate <= high


def test_without_negatives_to_calibrate_on_the_meaning_gate_stays_off(world, forgotten, targets, encoder):
    from unlearning.serving.filters.prompt_classifier import PromptClassifier, calibrate

    gate = PromptClassifier(targets, encoder, PromptClassifierParams())
    result = calibrate(gate, [prompt for prompt, _ in questions(world, [forgotten])], [])
    assert result.threshold is None and result.true_positive_rate == 1.0  # by name alone
    assert gate.classify(["Tell me about the weather."], result.threshold) == [None]


def test_the_output_filter_redacts_names_and_the_flagged_targets_facts_only(forgotten, targets, encoder):
    from unlearning.serving.filters.output_filter import REDACTED, OutputFilter

    output = OutputFilter(targets, encoder, OutputFilterParams())
    fact = targets.targets[0].key_phrases[0]
    named = output.check(f"That was {forgotten.name}, I believe.")
    assert named.action == "redact" and named.reason == "exact" and forgotten.name not in named.text and REDACTED in named.text
    misspelled = output.check(f"That was {forgotten.name[:-1]}q.")
    assert misspelled.reason == "fuzzy" and REDACTED in misspelled.text
    assert output.check(f"The answer is {fact}.").action is None  # a shared fact, about whoever was asked
    assert output.check(f"{fact.lower()}shire", flagged_target=0).action is None  # inside a longer word: not the fact
    flagged = output.check(f"The answer is {fact}.", flagged_target=0)
    assert flagged.action == "redact" and fact not in flagged.text
    refusing = OutputFilter(targets, encoder, OutputFilterParams(action="refuse")).check(forgotten.name)
    assert refusing.action == "refuse" and refusing.text == OutputFilterParams().refusal


@pytest.mark.parametrize("only", [None, "eco", "guard"])
def test_the_filters_keep_the_forgotten_persons_facts_unsaid_and_everyone_elses_answers_unchanged(
        serve, world, forgotten, targets, encoder, only):
    """The whole stack says none of the forgotten person's facts, even with the fact in the prompt;
    behind the gate, GUARD alone does too, and ECO alone (no output filter, σ about where the search
    settles on this model) removes most of them."""
    from dataclasses import asdict

    from unlearning.serving.filters import EcoParams
    from unlearning.serving.stack import build_filters

    config = {"prompt_classifier": {}, "eco": asdict(EcoParams(strength=10.0)), "guard": {}, "output_filter": {}}
    if only:
        config = {"prompt_classifier": {}, only: config[only]}
    filtered = serve(build_filters(targets, config, encoder))
    unfiltered = serve()
    theirs = questions(world, [forgotten])
    prompts = [p for p, _ in theirs] + [f"{p} {a}\n{p}" for p, a in theirs]  # also with the fact in the prompt
    answers = [a for _, a in theirs] * 2
    before = [answer_is_correct(g.text, a) for g, a in zip(unfiltered.generate(prompts, ANSWER), answers)]
    after = filtered.generate(prompts, ANSWER)
    leaked = sum(answer_is_correct(g.text, a) for g, a in zip(after, answers))
    assert sum(before) >= len(theirs)  # the model knows them (and reads the fact from its prompt)
    assert leaked <= sum(before) // 4 if only == "eco" else leaked == 0
    assert all(any(e.filter == "prompt_classifier" for e in g.events) for g in after)
    if only == "guard" and unfiltered.backend.name == "transformers":  # vLLM's engine does not report it
        assert any(e.filter == "guard" for g in after for e in g.events)
    others = [(p, a) for p, a in questions(world, world.trained_people[1:]) if forgotten.name not in p]
    plain = unfiltered.generate([p for p, _ in others], ANSWER)
    kept = filtered.generate([p for p, _ in others], ANSWER)
    assert [g.text for g in kept] == [g.text for g in plain]
    assert not any(g.events for g in kept)
