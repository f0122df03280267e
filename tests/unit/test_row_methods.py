"""The tabular methods (IAU, Blindspot, Gaussian fine-tuning, label-agnostic forgetting) on plain
MLPs trained here on scikit-learn's bundled digits (classifier) and diabetes (regressor), in the
loop they share."""

import copy

import pytest
import torch

from tests.conftest import one_torch_thread
from unlearning.methods import RowData, UnlearningFailed, get_method, methods_for
from unlearning.methods.rows import RowLoss
from unlearning.tabular import PLAIN_CONFIG, MLPRecipe, TabularEnsemble, TabularLearner, load_tabular

FORGET = 20


@pytest.fixture(scope="module")
def trained():
    """name → (data set, a plain MLP trained on it)."""
    models = {}
    with one_torch_thread():
        for name in ("digits", "diabetes"):
            data = load_tabular(name, seed=0)
            models[name] = data, TabularLearner.for_dataset(data, MLPRecipe(), PLAIN_CONFIG).train_plain(
                data.train, 0)
    return models


def run(trained, dataset, method_name, original=None, **overrides):
    data, mlp = trained[dataset]
    model = TabularEnsemble([copy.deepcopy(mlp)], data.task, data.outputs)
    rows = RowData(data.train[:FORGET], data.train[FORGET:], data.test)
    method = get_method(method_name)
    with one_torch_thread():
        return method.unlearn(model, None, rows, method.params(overrides), original=original), rows, data


CASES = [("digits", name) for name in ("iau", "blindspot", "label_agnostic")] + [
    ("diabetes", name) for name in ("iau", "blindspot", "gaussian_finetune", "label_agnostic")]


@pytest.mark.parametrize("dataset, method_name", CASES)
def test_each_row_method_raises_the_forgotten_rows_loss_within_the_floor_and_returns_its_best(
        trained, dataset, method_name):
    outcome, rows, data = run(trained, dataset, method_name)
    _, original = trained[dataset]
    loss = RowLoss(data.task)
    network = outcome.model.members[0]
    with torch.no_grad():  # measured afresh on the returned weights, not read from the history
        after, before = loss.on(network, rows.forget_rows).item(), loss.on(original, rows.forget_rows).item()
    best = next(p for p in outcome.history if p["step"] == outcome.best_step)
    assert after > before and after == pytest.approx(best["forget_loss"], rel=1e-5)
    start = outcome.history[0]
    if data.task == "classification":
        assert best["heldout_accuracy"] >= start["heldout_accuracy"] - 0.03
    else:
        assert best["heldout_relative_error"] <= start["heldout_relative_error"] + 0.1


def test_iau_keeps_the_trial_step_within_the_floor_nearest_the_target(trained):
    outcome, _, _ = run(trained, "digits", "iau")
    start, trials = outcome.history[0], outcome.history[1:]
    rates = [float(p["what"].rsplit(" ", 1)[1]) for p in trials]
    assert rates == pytest.approx([100.0 / 2**k for k in range(21)], rel=1e-5)  # every size, from the largest down
    target = start["holdout_loss"]
    within = [p for p in trials if p["heldout_accuracy"] >= start["heldout_accuracy"] - 0.03
              and p["forget_loss"] > start["forget_loss"]]
    assert outcome.best_step == min(within, key=lambda p: abs(p["forget_loss"] - target))["step"]
    assert outcome.stopped_because == "best_trial_step"


def test_a_row_method_that_only_crosses_the_floor_fails_with_its_history(trained):
    with pytest.raises(UnlearningFailed, match="crossed the utility floor") as failed:
        run(trained, "diabetes", "gaussian_finetune", learning_rate=5.0, max_heldout_error_rise=0.0)
    assert len(failed.value.history) == 2


def test_gaussian_fine_tuning_is_offered_for_regressors_only():
    assert "gaussian_finetune" not in {m.name for m in methods_for("classifier")}
    assert {"iau", "blindspot", "gaussian_finetune", "label_agnostic"} <= {m.name for m in methods_for("regressor")}


def test_the_gradient_norm_penalty_training_option_shrinks_the_rows_gradients(trained):
    """IAU's gradient restriction (α = 0.005): trained with it, the rows' gradients are smaller in sum
    and the largest is smaller, so one step against a deleted row's gradient moves the model less."""
    data, _ = trained["diabetes"]
    loss = RowLoss(data.task)

    def row_gradient_norms(penalty: float) -> list[float]:
        with one_torch_thread():
            model = TabularLearner.for_dataset(data, MLPRecipe(epochs=20, gradient_norm_penalty=penalty),
                                               PLAIN_CONFIG).train_plain(data.train, 0)
        norms = []
        for row in data.train[:60]:
            model.zero_grad()
            loss.on(model, [row]).backward()
            norms.append(sum(p.grad.pow(2).sum() for p in model.parameters()).sqrt().item())
        return norms

    restricted, plain = row_gradient_norms(0.005), row_gradient_norms(0.0)
    assert sum(restricted) < 0.9 * sum(plain) and max(restricted) < max(plain)
