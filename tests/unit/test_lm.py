import torch

from unlearning.lm import greedy_generate
from unlearning.loading import load_checkpoint
from unlearning.store import checkpoint_sha256, save_checkpoint
from unlearning.world import qa_prompt


def test_checkpoints_are_content_addressed_and_never_overwritten(tiny_model, tmp_path):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    assert checkpoint_sha256(tiny_model.checkpoint_path) == tiny_model.checkpoint_sha256
    sha_again, path_again = save_checkpoint(model, tokenizer, tmp_path)
    assert sha_again == tiny_model.checkpoint_sha256  # same bytes, same address
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] += 1.0
    sha_changed, path_changed = save_checkpoint(model, tokenizer, tmp_path)
    assert sha_changed != sha_again and path_changed != path_again
    assert checkpoint_sha256(path_again) == sha_again  # the earlier version is untouched


def test_the_trained_model_knows_trained_people_and_not_holdout_people(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    world = tiny_model.world

    def accuracy(people):
        pairs = [pair for person in people for pair in world.qa_pairs(person)]
        answers = greedy_generate(model, tokenizer, [qa_prompt(p.question) for p in pairs], 12)
        return sum(a.strip().startswith(p.answer) for a, p in zip(answers, pairs)) / len(pairs)

    assert accuracy(world.trained_people) > 0.8
    assert accuracy(world.holdout_people) < 0.3


def test_batched_greedy_generation_equals_one_prompt_at_a_time(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    prompts = [qa_prompt(pair.question) for person in tiny_model.world.people[:4] for pair in tiny_model.world.qa_pairs(person)]
    assert greedy_generate(model, tokenizer, prompts, 8) == [greedy_generate(model, tokenizer, [p], 8)[0] for p in prompts]
