import pytest

from unlearning.lm import mean_text_loss
from unlearning.loading import load_checkpoint
from unlearning.methods import UnlearningData, get_method


def subject_split(tiny_model):
    subject = tiny_model.world.trained_people[0]
    training = tiny_model.world.training_records()
    forget = [r.text for r in training if r.owner_key == subject.owner_key]
    retain = [r.text for r in training if r.owner_key != subject.owner_key]
    holdout = [r.text for r in tiny_model.world.holdout_records()]
    return forget, retain, holdout


def test_graddiff_raises_forget_loss_to_the_never_trained_level_within_the_utility_floor(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    forget, retain, holdout = subject_split(tiny_model)
    target = mean_text_loss(model, tokenizer, holdout)
    before_forget, before_retain = mean_text_loss(model, tokenizer, forget), mean_text_loss(model, tokenizer, retain)
    assert before_forget < target / 2  # the model knows the subject

    method = get_method("graddiff")
    outcome = method.unlearn(model, tokenizer, UnlearningData(forget, retain, target), method.params())

    assert outcome.stopped_because == "reached_target_forget_loss"
    assert mean_text_loss(model, tokenizer, forget) >= target
    assert mean_text_loss(model, tokenizer, retain) <= before_retain * (1 + method.params().max_retain_loss_increase)
    assert outcome.history[0]["step"] == 0 and outcome.history[-1]["step"] == outcome.steps


def test_graddiff_rolls_back_to_the_last_state_above_the_utility_floor(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    forget, retain, _ = subject_split(tiny_model)
    method = get_method("graddiff")
    params = method.params({"learning_rate": 3e-3, "retain_weight": 0.0, "max_retain_loss_increase": 0.05})
    before_retain = mean_text_loss(model, tokenizer, retain[:128])
    outcome = method.unlearn(model, tokenizer, UnlearningData(forget, retain, None), params)
    assert outcome.stopped_because == "utility_floor"
    kept = [point for point in outcome.history if point["retain_loss"] <= outcome.history[0]["retain_loss"] * 1.05]
    assert mean_text_loss(model, tokenizer, retain[:128]) <= before_retain * 1.2
    assert kept  # the state returned is one of those that stayed above the floor


def test_unknown_method_or_parameter_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'"):
        get_method("nope")
    with pytest.raises(ValueError, match="unknown parameters for graddiff: lr"):
        get_method("graddiff").params({"lr": 1})
