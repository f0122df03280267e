"""The approximate method library on a tiny world: every language-model method, on its full
parameters and through LoRA, in the guarded loop every method shares."""

import pytest
import torch
from peft import PeftModel

from tests.conftest import one_torch_thread
from unlearning.lm import mean_text_loss
from unlearning.loading import load_checkpoint
from unlearning.methods import METHODS, QA, UnlearningData, UnlearningFailed, get_method
from unlearning.methods.guarded import history_point
from unlearning.store import save_adapter_checkpoint, save_checkpoint

LANGUAGE_MODEL_METHODS = sorted(name for name, method in METHODS.items() if "causal_lm" in method.model_kinds)
# Small evaluation samples: these tests check the loop's logic, not the measures' precision.
QUICK = {"max_steps": 8, "eval_every_steps": 1, "retain_eval_size": 32, "retain_qa_eval_size": 20}


def subject_split(tiny_model):
    subject = tiny_model.world.trained_people[0]
    training = tiny_model.world.training_records()
    forget = [r.text for r in training if r.owner_key == subject.owner_key]
    retained = [r for r in training if r.owner_key != subject.owner_key]
    questions = [QA(f"Question: {r.question}\nAnswer:", r.answer) for r in retained if r.question]
    return forget, [r.text for r in retained], questions


def run(tiny_model, name, **overrides):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    forget, retain, questions = subject_split(tiny_model)
    method = get_method(name)
    with one_torch_thread():
        outcome = method.unlearn(model, tokenizer, UnlearningData(forget, retain, None, questions),
                                 method.params({**QUICK, **overrides}))
    return outcome, tokenizer, forget, retain


def weights(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_every_method_the_issue_names_is_registered_with_a_citation():
    assert set(LANGUAGE_MODEL_METHODS) == {"gradient_ascent", "graddiff", "npo", "simnpo", "rmu", "idkdpo", "undial"}
    assert all(METHODS[name].citation and METHODS[name].params_type.__doc__ for name in LANGUAGE_MODEL_METHODS)


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
@pytest.mark.parametrize("name", LANGUAGE_MODEL_METHODS)
def test_each_method_lowers_the_forget_sets_likelihood_and_returns_its_best_state(tiny_model, name, lora_rank):
    original, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    outcome, tokenizer, forget, retain = run(tiny_model, name, lora_rank=lora_rank)
    start, best = outcome.history[0], history_point(outcome.history, outcome.best_step)

    # Measured afresh on the model handed back, independently of the loop's history.
    assert mean_text_loss(outcome.model, tokenizer, forget) > mean_text_loss(original, tokenizer, forget) + 1e-3
    assert mean_text_loss(outcome.model, tokenizer, forget) == pytest.approx(best["forget_loss"], rel=1e-4)
    assert best["retain_loss"] <= start["retain_loss"] * 1.25 and best["retained_qa"] >= start["retained_qa"] - 0.1
    assert [point["step"] for point in outcome.history] == list(range(outcome.steps + 1))  # evaluated every step
    # LoRA merged: a plain model of the original's architecture, its weights changed.
    assert type(outcome.model) is type(original)
    assert weights(outcome.model).keys() == weights(original).keys()
    assert any(not torch.equal(a, b) for a, b in zip(weights(outcome.model).values(), weights(original).values()))


def test_the_guard_stops_at_the_utility_floor_and_returns_the_best_state_within_it(tiny_model):
    outcome, tokenizer, forget, retain = run(tiny_model, "gradient_ascent", learning_rate=1e-3, max_steps=40)
    assert outcome.stopped_because == "utility_floor"
    start, last, best = outcome.history[0], outcome.history[-1], history_point(outcome.history, outcome.best_step)
    assert last["retain_loss"] > start["retain_loss"] * 1.25 or last["retained_qa"] < start["retained_qa"] - 0.1
    assert outcome.best_step < last["step"]
    assert mean_text_loss(outcome.model, tokenizer, forget) == pytest.approx(best["forget_loss"], rel=1e-4)
    within = [p for p in outcome.history[1:-1]]
    assert best["forget_loss"] == max(p["forget_loss"] for p in within)


@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
def test_a_learning_rate_far_too_high_fails_with_its_history_and_leaves_the_model_as_it_was(tiny_model, lora_rank):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    before = weights(model)
    forget, retain, questions = subject_split(tiny_model)
    method = get_method("graddiff")
    with one_torch_thread(), pytest.raises(UnlearningFailed, match="already crossed the utility floor") as failed:
        method.unlearn(model, tokenizer, UnlearningData(forget, retain, None, questions),
                       method.params({**QUICK, "learning_rate": 1.0, "lora_rank": lora_rank}))
    start, first = failed.value.history
    assert first["step"] == 1 and (first["retain_loss"] > start["retain_loss"] * 1.25
                                   or first["retained_qa"] < start["retained_qa"] - 0.1)
    assert weights(model).keys() == before.keys()  # no LoRA layer left behind
    assert all(torch.equal(before[name], value) for name, value in weights(model).items())
    assert all(weight.requires_grad for weight in model.parameters())


def test_a_lora_adapter_kept_as_one_trains_its_b_matrices_and_is_pinned_with_its_base(tiny_model, tmp_path):
    outcome, tokenizer, forget, _ = run(tiny_model, "graddiff", lora_rank=4, keep_adapter=True)
    assert isinstance(outcome.model, PeftModel) and outcome.adapter
    lora_b = [w for name, w in outcome.model.named_parameters() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b)  # open-unlearning #178: they stayed at zero
    original, _ = load_checkpoint(tiny_model.checkpoint_path)
    base_sha256, _ = save_checkpoint(original, tokenizer, tmp_path)
    sha256, path = save_adapter_checkpoint(outcome.model, tokenizer, base_sha256, tmp_path)
    assert sha256 == save_adapter_checkpoint(outcome.model, tokenizer, base_sha256, tmp_path)[0]  # content-addressed
    loaded, _ = load_checkpoint(path)
    assert mean_text_loss(loaded, tokenizer, forget) == pytest.approx(mean_text_loss(outcome.model, tokenizer, forget),
                                                                      rel=1e-5)
    (tmp_path / base_sha256 / "config.json").write_text("{}")  # the base changed under the adapter
    with pytest.raises(RuntimeError, match="not the pinned"):
        load_checkpoint(path)


def test_rmu_finds_its_layer_and_mlps_by_the_models_shape(tiny_model, llama_checkpoint):
    from transformers import AutoModelForCausalLM

    from unlearning.methods import rmu

    gpt2, _ = load_checkpoint(tiny_model.checkpoint_path)
    llama = AutoModelForCausalLM.from_pretrained(llama_checkpoint[0])
    params = get_method("rmu").params()
    assert rmu.mlp_names(gpt2, params) == ["transformer.h.0.mlp", "transformer.h.1.mlp", "transformer.h.2.mlp"]
    assert rmu.mlp_names(llama, params) == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert all(name.startswith("model.layers.1.mlp.") for name in rmu.trainable(llama, get_method("rmu").params(
        {"updated_layers": 1})))
    with pytest.raises(ValueError, match="the model has 2 decoder blocks"):
        rmu.mlp_names(llama, get_method("rmu").params({"layer": 5}))


@pytest.mark.parametrize("overrides, message", [
    ({"lr": 1}, "unknown parameters for npo: lr"),
    ({"learning_rate": "fast"}, "npo.learning_rate must be float, not 'fast'"),
    ({"max_steps": 2.5}, "npo.max_steps must be int"),
    ({"max_steps": True}, "npo.max_steps must be int"),
    ({"learning_rate": -1}, "learning_rate must be positive"),
    ({"keep_adapter": True}, "keep_adapter needs LoRA"),
    ({"retain_weight": -0.5}, "retain_weight must not be negative"),
])
def test_parameters_are_checked_against_the_methods_dataclass(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_method("npo").params(overrides)


def test_a_choice_outside_a_literal_is_refused_and_ints_are_valid_floats():
    with pytest.raises(ValueError, match="graddiff.retain_loss must be one of 'nll', 'kl', not 'mse'"):
        get_method("graddiff").params({"retain_loss": "mse"})
    assert get_method("graddiff").params({"learning_rate": 1}).learning_rate == 1.0


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'"):
        get_method("nope")


def test_the_loop_stops_once_the_forget_set_looks_never_trained(tiny_model):
    model, tokenizer = load_checkpoint(tiny_model.checkpoint_path)
    forget, retain, questions = subject_split(tiny_model)
    target = mean_text_loss(model, tokenizer, forget) + 0.05
    method = get_method("graddiff")
    with one_torch_thread():
        outcome = method.unlearn(model, tokenizer, UnlearningData(forget, retain, target, questions),
                                 method.params({**QUICK, "max_steps": 30}))
    before, past = outcome.history[-2], outcome.history[-1]
    assert outcome.stopped_because == "reached_target_forget_loss" and outcome.steps < 30
    assert before["forget_loss"] < target <= past["forget_loss"]
    # The state returned is whichever of the two is nearer the target (past it is over-unlearning).
    nearest = min((before, past), key=lambda point: abs(point["forget_loss"] - target))
    assert outcome.best_step == nearest["step"]
    assert mean_text_loss(model, tokenizer, forget) == pytest.approx(nearest["forget_loss"], rel=1e-4)


def test_the_floor_is_measured_from_the_original_so_sequential_jobs_cannot_each_spend_it(tiny_model):
    """A later version already past the floor, as measured from the original, takes no more
    unlearning: the job fails before any step, saying why."""
    worn, tokenizer, forget, retain = run(tiny_model, "gradient_ascent", learning_rate=1e-3, max_steps=40,
                                          max_retain_loss_increase=3.0, max_retained_qa_drop=0.6)
    original, _ = load_checkpoint(tiny_model.checkpoint_path)
    _, _, questions = subject_split(tiny_model)
    method = get_method("graddiff")
    with one_torch_thread(), pytest.raises(UnlearningFailed, match="already past the utility floor measured from "
                                                                  "the original") as failed:
        method.unlearn(worn.model, tokenizer, UnlearningData(forget, retain, None, questions), method.params(QUICK),
                       original=original)
    assert [point["step"] for point in failed.value.history] == [0]


@pytest.mark.parametrize("steps_per_epoch, evaluated", [(1, [1, 2, 3, 4, 5, 10, 12]), (7, [1, 2, 3, 4, 5, 7, 10, 12]),
                                                       (3, [1, 2, 3, 4, 5, 10, 12])])
def test_evaluations_fall_on_each_first_step_then_every_few_and_at_the_end_of_longer_epochs(steps_per_epoch, evaluated):
    from unlearning.methods.guarded import evaluated_at

    params = get_method("graddiff").params({"max_steps": 12})
    assert [step for step in range(1, 13) if evaluated_at(step, steps_per_epoch, params)] == evaluated
