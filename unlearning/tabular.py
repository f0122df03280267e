"""Tabular models under SISA: scikit-learn's bundled data sets as training records, a small MLP
learner for classification and regression, and the ensemble that aggregates its shards.

Every row is one data subject's record, shaped like a manifest line:
`{"record_id": "digits-00017", "owner_key": "subject-00017@digits.example", "kind": "row",
"features": [...], "target": ...}` (the owner key is the e-mail address a removal request names). The data sets ship inside scikit-learn (nothing is downloaded); the train/test
split is deterministic for a seed (stratified for classes), and features, and regression
targets, are standardised with statistics of the training rows only. Those statistics are part
of the data preparation, not of any shard model, so a deletion does not recompute them.

Aggregation: a classifier ensemble takes the majority vote of its members (a tie goes to the
lowest class); a regressor ensemble averages them. Pure ML code: no Django.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn import datasets
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from unlearning.numerics import PinnedNumerics
from unlearning.sisa import SisaConfig, SliceSchedule, SliceTraining, read_served_manifest, served_member_dirs
from unlearning.store import PLAIN_MLP_MANIFEST, store_directory

CLASSIFICATION = "classification"
REGRESSION = "regression"
PLAIN_CONFIG = SisaConfig(shards=1, slices=1)  # a plain model's schedule: every epoch of the recipe on every row
LOADERS = {
    "digits": (datasets.load_digits, CLASSIFICATION),
    "breast_cancer": (datasets.load_breast_cancer, CLASSIFICATION),
    "diabetes": (datasets.load_diabetes, REGRESSION),
}


@dataclass(frozen=True)
class TabularDataset:
    name: str
    task: str  # classification | regression
    features: int
    outputs: int  # classes, or 1 for regression
    train: list[dict]
    test: list[dict]
    target_scale: float = 1.0  # a standardised regression target's standard deviation, to report RMSE in its unit


def load_tabular(name: str, test_fraction: float = 0.2, seed: int = 0) -> TabularDataset:
    loader, task = LOADERS[name]
    bunch = loader()
    features, targets = bunch.data.astype(np.float64), bunch.target
    train_rows, test_rows = train_test_split(np.arange(len(targets)), test_size=test_fraction, random_state=seed,
                                             stratify=targets if task == CLASSIFICATION else None)
    features = _standardised(features, train_rows)
    target_scale = 1.0
    if task == REGRESSION:
        target_scale = float(targets[train_rows].std())
        targets = _standardised(targets.astype(np.float64), train_rows)

    def records(rows) -> list[dict]:
        return [_record(name, int(row), features[row], targets[row], task) for row in sorted(rows)]

    outputs = int(targets.max()) + 1 if task == CLASSIFICATION else 1
    return TabularDataset(name, task, features.shape[1], outputs, records(train_rows), records(test_rows), target_scale)


def rows_dataset(name: str, task: str, train: list[dict], test: list[dict]) -> TabularDataset:
    """An operator's own rows as a data set, checked: every row as many numeric features as the
    first, class targets whole numbers from 0 (two classes at least, every held-out class seen in
    training), regression targets numbers, no row on both sides. Taken as given (no
    standardisation): preparing features is the operator's, and a deletion must not change it."""
    if task not in (CLASSIFICATION, REGRESSION):
        raise ValueError(f"task is {CLASSIFICATION} or {REGRESSION}, not {task!r}")
    if not train or not test:
        raise ValueError("no training rows" if not train else "no held-out rows: the audits compare with them")
    features = len(train[0]["features"])
    for row in [*train, *test]:
        _check_row(row, task, features)
    if both := sorted({r["record_id"] for r in train} & {r["record_id"] for r in test}):
        raise ValueError(f"row {both[0]} is both a training and a held-out row")
    if task == REGRESSION:
        return TabularDataset(name, task, features, 1, list(train), list(test))
    classes = {row["target"] for row in train}
    if len(classes) < 2:
        raise ValueError(f"the training rows hold {len(classes)} class: a classifier needs two at least")
    if unseen := next((row for row in test if row["target"] not in classes), None):
        raise ValueError(f"row {unseen['record_id']}: class {unseen['target']} is in no training row")
    return TabularDataset(name, task, features, max(classes) + 1, list(train), list(test))


def _check_row(row: dict, task: str, features: int) -> None:
    values, target = row["features"], row["target"]
    if not isinstance(values, list) or len(values) != features or not all(_is_number(v) for v in values):
        raise ValueError(f"row {row['record_id']}: features must be {features} numbers, like the first row's")
    if task == CLASSIFICATION and not (isinstance(target, int) and not isinstance(target, bool) and target >= 0):
        raise ValueError(f"row {row['record_id']}: a class target is a whole number from 0, not {target!r}")
    if task == REGRESSION and not _is_number(target):
        raise ValueError(f"row {row['record_id']}: a regression target is a number, not {target!r}")


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _standardised(values: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    mean, std = values[train_rows].mean(0), values[train_rows].std(0)
    return (values - mean) / np.where(std > 0, std, 1.0)  # constant columns (digits' blank border pixels) stay at 0


def subject_email(name: str, row: int) -> str:
    """The (fictitious) data subject of a bundled data set's row: one person per row."""
    return f"subject-{row:05d}@{name.replace('_', '-')}.example"


def _record(name: str, row: int, features: np.ndarray, target, task: str) -> dict:
    return {"record_id": f"{name}-{row:05d}", "owner_key": subject_email(name, row), "kind": "row",
            "features": features.tolist(), "target": int(target) if task == CLASSIFICATION else float(target)}


@dataclass(frozen=True)
class MLPRecipe:
    hidden: int = 64
    epochs: int = 40  # of plain training; SISA spreads the same compute over its slices
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    # α·‖∇θ loss‖² added to each batch's loss: IAU's training option (α = 0.005 in its paper), which
    # keeps the loss surface flat enough for its one-step unlearning to approximate retraining.
    gradient_norm_penalty: float = 0.0


def new_mlp(features: int, hidden: int, outputs: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, outputs))


def load_mlp(directory: Path) -> torch.nn.Sequential:
    shape = json.loads((Path(directory) / "config.json").read_text())
    model = new_mlp(shape["features"], shape["hidden"], shape["outputs"])
    model.load_state_dict(load_file(Path(directory) / "model.safetensors"))
    return model.eval()


class TabularLearner(PinnedNumerics):
    """An MLP trained with AdamW in shuffled mini-batches: cross-entropy for classes, MSE for regression."""

    def __init__(self, task: str, features: int, outputs: int, recipe: MLPRecipe, config: SisaConfig):
        self.task, self.features, self.outputs, self.recipe = task, features, outputs, recipe
        self.schedule = SliceSchedule.matching_plain_training(recipe.epochs, recipe.batch_size, config.slices,
                                                              config.epoch_scale)

    @classmethod
    def for_dataset(cls, dataset: TabularDataset, recipe: MLPRecipe, config: SisaConfig) -> TabularLearner:
        return cls(dataset.task, dataset.features, dataset.outputs, recipe, config)

    @classmethod
    def from_hyperparameters(cls, hyperparameters: dict, config: SisaConfig) -> TabularLearner:
        """The learner a lineage names (`describe(learner)["hyperparameters"]`): what retrains its shards."""
        # A field added since the lineage was written (gradient_norm_penalty) takes its default: the
        # learner it describes trained without it.
        recipe = MLPRecipe(**{name: hyperparameters[name] for name in MLPRecipe.__dataclass_fields__
                              if name in hyperparameters})
        return cls(hyperparameters["task"], hyperparameters["features"], hyperparameters["outputs"], recipe, config)

    @property
    def name(self) -> str:
        return f"mlp-{self.task}"

    def device_description(self) -> None:
        """Always the CPU: these MLPs have a few thousand weights, and moving each batch to a GPU
        would cost more than the arithmetic (UNLEARNING_DEVICE applies to language models)."""
        return None

    def hyperparameters(self) -> dict:
        """What a lineage records of this learner; without the penalty when it is off, so lineages
        written before the option existed still describe the same learner (SISA checks they match)."""
        recipe = asdict(self.recipe)
        if not recipe["gradient_norm_penalty"]:
            del recipe["gradient_norm_penalty"]
        return {**recipe, "task": self.task, "features": self.features, "outputs": self.outputs}

    def initial_state(self, seed: int) -> torch.nn.Sequential:
        torch.manual_seed(seed)
        return new_mlp(self.features, self.recipe.hidden, self.outputs)

    def train_slice(self, model: torch.nn.Module, records: Sequence[dict], seed: int) -> SliceTraining:
        inputs = torch.tensor([r["features"] for r in records], dtype=torch.float32).reshape(len(records), self.features)
        targets = self._targets(records)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.recipe.learning_rate,
                                      weight_decay=self.recipe.weight_decay)
        order = torch.Generator().manual_seed(seed)
        steps, trained = 0, set()
        model.train()
        for _ in range(self.schedule.epochs):
            for batch in torch.randperm(len(records), generator=order).split(self.recipe.batch_size):
                self.penalised(model, inputs[batch], targets[batch]).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                trained.update(batch.tolist())
        model.eval()
        return SliceTraining(frozenset(records[i]["record_id"] for i in trained), steps)

    def penalised(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's loss plus α·mean over its rows of ‖∇θ ℓ(row)‖²: per row, so that no single row
        (an outlier) has a gradient that a later deletion would have to undo alone."""
        loss = self._loss(model(inputs), targets)
        if not self.recipe.gradient_norm_penalty:
            return loss
        weights = dict(model.named_parameters())

        def row_loss(params, x, y):
            return self._loss(torch.func.functional_call(model, params, (x.unsqueeze(0),)), y.unsqueeze(0))

        per_row = torch.func.vmap(torch.func.grad(row_loss), in_dims=(None, 0, 0))(weights, inputs, targets)
        squared_norms = sum(g.pow(2).flatten(1).sum(1) for g in per_row.values())
        return loss + self.recipe.gradient_norm_penalty * squared_norms.mean()

    def train_plain(self, records: Sequence[dict], seed: int) -> torch.nn.Sequential:
        """One MLP on every row, by the recipe (a plain model: no shards)."""
        model = self.initial_state(seed)
        self.train_slice(model, records, seed)
        return model

    def _targets(self, records: Sequence[dict]) -> torch.Tensor:
        dtype = torch.long if self.task == CLASSIFICATION else torch.float32
        return torch.tensor([r["target"] for r in records], dtype=dtype)

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.task == CLASSIFICATION:
            return torch.nn.functional.cross_entropy(outputs, targets)
        return torch.nn.functional.mse_loss(outputs.squeeze(-1), targets)

    def save(self, model: torch.nn.Module, directory: Path) -> None:
        save_file(model.state_dict(), Path(directory) / "model.safetensors")
        shape = {"features": self.features, "hidden": self.recipe.hidden, "outputs": self.outputs}
        (Path(directory) / "config.json").write_text(json.dumps(shape, sort_keys=True) + "\n")

    def load(self, directory: Path) -> torch.nn.Sequential:
        return load_mlp(directory)


def save_plain_mlp(model: torch.nn.Module, learner: TabularLearner, seed: int, store: Path) -> tuple[str, Path]:
    """A plain (unsharded) MLP as one content-addressed folder, with what serving it and retraining
    it (its learner and seed: the reference is retrained by them) need."""

    def write(staging: Path) -> None:
        learner.save(model, staging)
        (staging / PLAIN_MLP_MANIFEST).write_text(json.dumps(
            {"task": learner.task, "hyperparameters": learner.hyperparameters(), "seed": seed}, sort_keys=True) + "\n")

    return store_directory(write, store)


def load_plain_mlp(path: Path) -> TabularEnsemble:
    """A plain MLP served as an ensemble of one (the audits read every tabular model so)."""
    manifest = json.loads((Path(path) / PLAIN_MLP_MANIFEST).read_text())
    return TabularEnsemble([load_mlp(path)], manifest["task"], manifest["hyperparameters"]["outputs"])


def plain_mlp_learner(path: Path) -> tuple[TabularLearner, int]:
    """The learner and seed a stored plain MLP was trained by (its reference is retrained by them)."""
    manifest = json.loads((Path(path) / PLAIN_MLP_MANIFEST).read_text())
    return TabularLearner.from_hyperparameters(manifest["hyperparameters"], PLAIN_CONFIG), manifest["seed"]


def majority_vote(votes: torch.Tensor, classes: int) -> torch.Tensor:
    """The class most members vote for, per row of `votes` (members × rows). A tie goes to the lowest
    class: argmax returns the first of equal maxima, which keeps the ensemble deterministic."""
    return torch.nn.functional.one_hot(votes, classes).sum(0).argmax(-1)


class TabularEnsemble:
    def __init__(self, members: Sequence[torch.nn.Module], task: str, outputs: int):
        self.members, self.task, self.outputs = list(members), task, outputs

    @torch.no_grad()
    def member_outputs(self, features: Sequence[Sequence[float]]) -> torch.Tensor:
        """members × rows × outputs: each shard model's logits (or regression output)."""
        return torch.stack([member(torch.tensor(features, dtype=torch.float32)) for member in self.members])

    def predict(self, features: Sequence[Sequence[float]]) -> torch.Tensor:
        outputs = self.member_outputs(features)
        if self.task == CLASSIFICATION:
            return majority_vote(outputs.argmax(-1), self.outputs)
        return outputs.squeeze(-1).mean(0)

    def class_probabilities(self, features: Sequence[Sequence[float]]) -> torch.Tensor:
        """rows × classes: the members' softmax averaged (the soft vote an attacker with the
        ensemble's scores would see; the served label is the hard vote)."""
        return self.member_outputs(features).softmax(-1).mean(0)


def load_tabular_ensemble(path: Path) -> TabularEnsemble:
    """The served ensemble that `unlearning.sisa.export_served_model` wrote."""
    hyperparameters = read_served_manifest(path)["learner"]["hyperparameters"]
    return TabularEnsemble([load_mlp(directory) for directory in served_member_dirs(path)],
                           hyperparameters["task"], hyperparameters["outputs"])


def row_losses(model: TabularEnsemble, rows: Sequence[dict]) -> list[float]:
    """Per row, the ensemble's loss on its true target: −log of the soft vote's probability of the
    true class, or the squared error of the mean prediction (standardised units)."""
    if not rows:
        return []
    features = [r["features"] for r in rows]
    if model.task == CLASSIFICATION:
        probabilities = model.class_probabilities(features)
        truth = torch.tensor([r["target"] for r in rows])
        return (-probabilities[torch.arange(len(rows)), truth].clamp_min(1e-12).log()).tolist()
    return row_squared_errors(model, rows)


def row_confidences(model: TabularEnsemble, rows: Sequence[dict]) -> list[float]:
    """Per row, the soft vote's highest class probability: what a label-free attacker sees."""
    return model.class_probabilities([r["features"] for r in rows]).max(-1).values.tolist() if rows else []


def row_hits(model: TabularEnsemble, rows: Sequence[dict]) -> list[float]:
    """Per row, 1.0 where the served (majority-vote) label is the true class, else 0.0."""
    if not rows:
        return []
    predicted, truth = _predictions(model, rows)
    return (predicted == truth).astype(float).tolist()


def row_squared_errors(model: TabularEnsemble, rows: Sequence[dict]) -> list[float]:
    if not rows:
        return []
    predicted, truth = _predictions(model, rows)
    return ((predicted - truth) ** 2).tolist()


def _predictions(model: TabularEnsemble, records: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    return model.predict([r["features"] for r in records]).numpy(), np.array([r["target"] for r in records])


def held_out_accuracy(model: TabularEnsemble, dataset: TabularDataset) -> float:
    predicted, truth = _predictions(model, dataset.test)
    return float((predicted == truth).mean())


def held_out_r2(model: TabularEnsemble, dataset: TabularDataset) -> float:
    predicted, truth = _predictions(model, dataset.test)
    return float(r2_score(truth, predicted))


def held_out_rmse(model: TabularEnsemble, dataset: TabularDataset) -> float:
    """In the target's own unit."""
    predicted, truth = _predictions(model, dataset.test)
    return float(math.sqrt(((predicted - truth) ** 2).mean())) * dataset.target_scale
