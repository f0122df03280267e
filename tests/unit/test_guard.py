import random

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

from tests.conftest import one_torch_thread
from unlearning.ensemble import EnsembleCausalLM
from unlearning.lm import prompt_ids, train_causal_lm, train_tokenizer
from unlearning.recipe import TrainingRecipe
from unlearning.serving.filters import GuardParams
from unlearning.serving.filters.guard import (
    GuardLogitsProcessor,
    guard_rules,
    phrase_sequences,
    restrict_row,
    sequence_rules,
    token_embedding_matrix,
)

FACTS = {
    "Question: Where was Alma Kestrel born?\nAnswer:": " Brisk Harbour",
    "Question: What does Alma Kestrel make?\nAnswer:": " glass bowls",
    "Question: When was Alma Kestrel born?\nAnswer:": " 1975",
    "Question: Where was Bruno Tallis born?\nAnswer:": " Cold Meadow",
    "Question: What does Bruno Tallis make?\nAnswer:": " oak chairs",
    "Question: When was Bruno Tallis born?\nAnswer:": " 1962",
}
BORN = "Question: Where was Alma Kestrel born?\nAnswer:"


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def taught():
    """(model, tokenizer): a tiny GPT-2 that has learned the facts, so its greedy answer is the phrase."""
    texts = [prompt + answer for prompt, answer in FACTS.items()]
    tokenizer = train_tokenizer(texts, 400)
    recipe = TrainingRecipe(n_layer=2, n_head=2, n_embd=32, n_positions=64, epochs=300, batch_size=len(texts),
                            learning_rate=1e-2, warmup_steps=10, seed=0)
    return train_causal_lm(texts, tokenizer, recipe), tokenizer


def greedy(model, tokenizer, prompts, processor=None):
    input_ids = torch.tensor([prompt_ids(tokenizer, p) for p in prompts])  # same length: no padding
    output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=8,
                            do_sample=False, pad_token_id=tokenizer.pad_token_id,
                            logits_processor=LogitsProcessorList([processor] if processor else []))
    return output[:, input_ids.shape[1]:].tolist()


def contains(tokens, sequence):
    return any(tuple(tokens[i : i + len(sequence)]) == sequence for i in range(len(tokens)))


def test_phrases_are_forbidden_as_a_model_may_write_them(taught):
    _, tokenizer = taught
    sequences = phrase_sequences(tokenizer, ["brisk Harbour", "1975", "  ", "1975"])
    texts = {tokenizer.decode(s) for s in sequences}
    assert texts == {"brisk Harbour", " brisk Harbour", "Brisk Harbour", " Brisk Harbour", "1975", " 1975"}
    assert len(sequences) == len(texts)  # "1975" capitalised is itself, and given twice: one sequence each way


def brute_force_forbidden(generated, sequences):
    """Every sequence's t(k+1) for each k whose first k tokens the generated tokens end with."""
    return {s[k] for s in sequences for k in range(len(s))
            if k <= len(generated) and list(generated[len(generated) - k:]) == list(s[:k])}


def test_exactly_the_tokens_that_would_continue_a_forbidden_sequence_are_banned():
    rng = random.Random(0)
    vocabulary = 12
    sequences = [tuple(rng.randrange(vocabulary) for _ in range(rng.randint(1, 4))) for _ in range(4)]
    rules = sequence_rules(sequences, GuardParams())
    for _ in range(300):
        generated = [rng.randrange(vocabulary) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.7:  # end on a partial match, often
            partial = rng.choice(sequences)
            generated += partial[: rng.randint(0, len(partial))]
        scores = torch.randn(vocabulary)
        restricted = restrict_row(generated, scores, rules, GuardParams())
        banned = {i for i in range(vocabulary) if restricted[i] == float("-inf")}
        assert banned == brute_force_forbidden(generated, sequences)
        kept = [i for i in range(vocabulary) if i not in banned]
        assert torch.equal(restricted[kept], scores[kept])


def test_only_generated_tokens_count_towards_a_match():
    rules = sequence_rules([(1, 2, 3)], GuardParams())
    scores = torch.zeros(5)
    assert restrict_row([1, 2], scores, rules, GuardParams())[3] == float("-inf")
    assert restrict_row([], scores, rules, GuardParams())[3] == 0  # the prompt may have ended with 1, 2
    assert torch.equal(scores, torch.zeros(5))  # not modified in place


def test_without_ban_forbidden_tokens_lose_the_penalty_instead():
    params = GuardParams(ban=False, penalty=4.0)
    scores = torch.arange(6, dtype=torch.float)
    restricted = restrict_row([1], scores, sequence_rules([(1, 2), (3,)], params), params)
    assert restricted.tolist() == [0.0, 1.0 - 4.0, 2.0 - 4.0, 3.0 - 4.0, 4.0, 5.0]


def test_the_semantic_penalty_hits_a_near_copy_of_a_token_forbidden_now_and_not_an_orthogonal_one():
    embeddings = torch.eye(10)
    embeddings[7] = 3 * embeddings[3]  # same direction as forbidden token 3
    embeddings[9] = embeddings[4]  # a copy of 4, which is forbidden only after 3
    params = GuardParams(semantic_penalty=2.0, candidates=10)
    rules = sequence_rules([(3, 4)], params, embeddings)
    scores = torch.zeros(10)
    fresh = restrict_row([], scores, rules, params)
    assert fresh[7] == -2.0 and fresh[8] == 0.0 and fresh[9] == 0.0
    after_three = restrict_row([3], scores, rules, params)
    assert after_three[7] == -2.0 and after_three[9] == -2.0 and after_three[8] == 0.0
    top_one = GuardParams(semantic_penalty=2.0, candidates=1)
    scores[8] = 1.0  # the top candidate once 3 is banned; 7 is not among the top one
    assert restrict_row([], scores, rules, top_one)[7] == 0.0


def test_greedy_generation_never_spells_the_fact_and_rows_not_flagged_are_untouched(taught):
    model, tokenizer = taught
    params = GuardParams()
    rules = guard_rules(tokenizer, ["Brisk Harbour"], params, token_embedding_matrix(model))
    unfiltered = greedy(model, tokenizer, [BORN, BORN])
    assert tokenizer.decode(unfiltered[0]).startswith(" Brisk Harbour")
    length = len(prompt_ids(tokenizer, BORN))
    guard = GuardLogitsProcessor([rules, None], [length, length], params)
    guarded = greedy(model, tokenizer, [BORN, BORN], guard)
    assert "Brisk Harbour" not in tokenizer.decode(guarded[0])
    assert not any(contains(guarded[0], s) for s in rules.sequences)
    assert guarded[1] == unfiltered[1]
    # Where GUARD first changed the greedy choice is where the two answers first differ.
    first_difference = next(i for i, (a, b) in enumerate(zip(guarded[0], unfiltered[0])) if a != b)
    assert guard.interventions == [first_difference, None]


def test_a_hand_written_decode_loop_gets_what_generate_gets(taught):
    model, tokenizer = taught
    params = GuardParams(ban=False)
    rules = guard_rules(tokenizer, ["Brisk Harbour", "1975"], params, token_embedding_matrix(model))
    prompt = prompt_ids(tokenizer, BORN)
    input_ids = torch.tensor([prompt])
    guard = GuardLogitsProcessor([rules], [len(prompt)], params)
    with torch.no_grad():
        for _ in range(8):
            scores = guard(input_ids, model(input_ids=input_ids).logits[:, -1])
            input_ids = torch.cat([input_ids, scores.argmax(-1, keepdim=True)], dim=1)
            if input_ids[0, -1] == tokenizer.eos_token_id:
                break
    by_generate = greedy(model, tokenizer, [BORN], GuardLogitsProcessor([rules], [len(prompt)], params))[0]
    assert input_ids[0, len(prompt):].tolist() == by_generate
    assert guard.interventions[0] is not None


def test_the_embedding_matrix_is_the_served_models_own(taught):
    _, tokenizer = taught

    def tiny(seed):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=len(tokenizer), n_positions=64))

    first, second = tiny(1), tiny(2)
    assert torch.equal(token_embedding_matrix(first), first.transformer.wte.weight)
    assert torch.equal(token_embedding_matrix(EnsembleCausalLM([first, second])), first.transformer.wte.weight)
    adapted = get_peft_model(tiny(3), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    assert torch.equal(token_embedding_matrix(adapted), adapted.base_model.model.transformer.wte.weight)
