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


def pieces_and_result(stream):
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            return pieces, done.value


def test_with_every_filter_on_a_stream_sends_what_generate_returns(serve, world, forgotten, targets, encoder):
    """Texts, reasons, token counts and filter events, for prompts about the forgotten person (the
    output filter redacting or refusing mid-answer) and about others."""
    from dataclasses import asdict

    from unlearning.serving.filters import EcoParams
    from unlearning.serving.stack import build_filters

    prompts = [forgotten.name, f"{forgotten.name} and {world.trained_people[1].name}",
               questions(world, [forgotten])[0][0], world.trained_people[2].name]
    every = {"prompt_classifier": {}, "eco": asdict(EcoParams(strength=1.0)), "guard": {}, "output_filter": {}}
    for config in (every, {"prompt_classifier": {}, "output_filter": {}},
                   {"prompt_classifier": {}, "output_filter": {"action": "refuse"}}):
        server = serve(build_filters(targets, config, encoder))
        sampling = Sampling(max_new_tokens=24, stop=("\n\n",))
        generated = server.generate(prompts, sampling)
        for prompt, whole in zip(prompts, generated):
            pieces, streamed = pieces_and_result(server.stream(prompt, sampling))
            assert "".join(pieces) == streamed.text == whole.text
            assert (streamed.finish_reason, streamed.completion_tokens) == (whole.finish_reason, whole.completion_tokens)
            assert streamed.events == whole.events
            assert forgotten.name not in whole.text
        if config is not every:  # nothing but the output filter stops the model's facts
            assert any(e.filter == "output_filter" for g in generated for e in g.events)


def test_a_checked_stream_never_sends_a_name_written_across_a_sentence_mark(forgotten, targets, encoder):
    """Fed character by character, the checker sends exactly what checking the whole text gives: a
    name or fact is caught whole even where a sentence mark splits it ("A. Kestrel")."""
    from unlearning.serving.filters.output_filter import OutputFilter
    from unlearning.serving.filters.prompt_classifier import Flag
    from unlearning.serving.stack import OutputChecker

    first, last = forgotten.name.split(" ", 1)
    fact = targets.targets[0].key_phrases[0]
    texts = [f"Ask {first[0]}. {last} about it. They would know, I think.",
             f"The answer is {fact}. Or so {forgotten.name} said, long ago. Nobody else did.",
             "Nothing to see here. Really nothing at all, for anyone. The weather was mild that year, and the "
             "harvest came in early.\nDone."]
    flag = Flag(target=0, score=1.0, by="name")
    for action in ("redact", "refuse"):
        output = OutputFilter(targets, encoder, OutputFilterParams(action=action))
        for text in texts:
            checker = OutputChecker(output, flag)
            pieces = [piece for end in range(1, len(text)) for piece in checker.feed(text[:end], final=False)]
            pieces += list(checker.feed(text, final=True))
            sent = "".join(pieces)
            whole = output.check(text, flagged_target=0)
            assert last not in sent and fact not in sent
            if whole.action is None:
                assert sent == text and len(pieces) > 1  # sentence by sentence, not all at the end
            elif action == "redact":
                assert sent == whole.text
            else:
                assert checker.refused and sent.endswith(whole.text)


def test_a_stream_holds_back_what_may_begin_a_stop_string_and_reviews_once():
    from types import SimpleNamespace

    from unlearning.serving.stack import OutputChecker

    checker = OutputChecker(None, None, stops=("###",))
    assert list(checker.feed("Hi #", final=False)) == ["Hi "]
    assert list(checker.feed("Hi ##", final=False)) == []
    assert list(checker.feed("Hi ", final=True)) == []  # the stop string came: cut before it
    assert checker.emitted == "Hi "
    reviews = []
    reviewing = OutputChecker(None, None, review=lambda answer: reviews.append(answer) or SimpleNamespace(action=None))
    assert list(reviewing.feed("An answer.", final=False)) == []  # held for the agents
    assert list(reviewing.feed("An answer.", final=True)) == ["An answer."]
    assert list(reviewing.feed("An answer.", final=True)) == []
    assert reviews == ["An answer."]


def test_guard_is_counted_where_it_changed_the_answer_that_was_sent(served, serve, forgotten, targets, encoder):
    """In a stream as in generate; not when the change came after the answer's stop string."""
    from unlearning.serving.stack import build_filters

    if serve().backend.name != "transformers":
        pytest.skip("vLLM's engine does not report GUARD's changes")
    server = serve(build_filters(targets, {"prompt_classifier": {}, "guard": {}}, encoder))
    sampling = Sampling(max_new_tokens=20)
    whole = server.generate([forgotten.name], sampling)[0]
    changed = [e.at_token for e in whole.events if e.filter == "guard"]
    assert changed and changed[0] > 0  # the biography names the person first; GUARD acts at a fact
    _, streamed = pieces_and_result(server.stream(forgotten.name, sampling))
    assert streamed.events == whole.events
    stopped = server.generate([forgotten.name], Sampling(max_new_tokens=20, stop=(whole.text.split()[0],)))[0]
    assert stopped.finish_reason == "stop" and stopped.completion_tokens <= changed[0]
    assert not any(e.filter == "guard" for e in stopped.events)


def test_a_chat_models_end_of_turn_token_ends_the_answer(served, world):
    """Tokens the generation config lists as ends (Llama 3's <|eot_id|>) end an answer as end-of-text does."""
    from unlearning.lm import prompt_ids
    from unlearning.serving.decoding import decode
    from unlearning.serving.stack import ServedModel

    model, tokenizer = served
    prompt = world.trained_people[0].name
    tokens = [step.item() for step in decode(model, [prompt_ids(tokenizer, prompt)], Sampling(max_new_tokens=10),
                                               [tokenizer.eos_token_id])]
    at = next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i])  # a token not said before
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokens[at]]
    try:
        ended = ServedModel(model, tokenizer).generate([prompt], Sampling(max_new_tokens=10))[0]
    finally:
        model.generation_config.eos_token_id = saved
    assert ended.finish_reason == "stop" and ended.completion_tokens == at + 1
    assert ended.text == tokenizer.decode(tokens[:at], skip_special_tokens=True)


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


def test_the_meaning_gate_reads_the_end_of_a_long_prompt(forgotten, targets, encoder):
    """The encoder reads 256 word pieces; a long prompt's question comes last."""
    from unlearning.serving.filters.prompt_classifier import PromptClassifier

    gate = PromptClassifier(targets, encoder, PromptClassifierParams())
    about_them = targets.targets[0].texts[0].split(" Contact:")[0].replace(forgotten.name, "this person")
    filler = "The weather in the hills was cold that winter, and the river froze early. " * 40
    threshold = float(gate.meaning_scores([about_them])[0][0]) - 0.05
    head_only = float((encoder.encode([filler + about_them]) @ gate.anchors.T).max())
    assert head_only < threshold  # what the gate saw of it before
    flag = gate.classify([filler + about_them], threshold)[0]
    assert flag is not None and flag.target == 0 and flag.by == "meaning"
    assert gate.classify([filler], threshold) == [None]


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
