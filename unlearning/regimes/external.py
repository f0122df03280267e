"""External: a checkpoint the service did not train (an operator's own fine-tuned model), with the
manifest of the data it was trained on as its lineage. Only approximate methods apply, and there
is no retrained reference (the service has no recipe that reproduces the model): the audits
compare with the never-trained records of its holdout manifest."""

from __future__ import annotations

from collections.abc import Sequence

from unlearning.regimes import Deletion, ModelState, Trained, Workbench, register
from unlearning.regimes.plain import PlainRegime


class ExternalRegime(PlainRegime):
    name = "external"
    label = "external (a checkpoint the service did not train: approximate unlearning only)"
    trains = False
    model_kinds = frozenset({"causal_lm"})  # an operator's own checkpoint is a transformers causal LM

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> None:
        return None

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        raise ValueError("an external model has no recipe to retrain it by")

    def train(self, training: Sequence[dict], bench: Workbench, config: None) -> Trained:
        raise ValueError("an external model is registered as it is (manage.py register_model), not trained here")


register(ExternalRegime())
