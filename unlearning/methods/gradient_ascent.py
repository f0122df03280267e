"""Gradient ascent: raise the forget texts' NLL (unlearning.methods.hyperparameters.GradientAscentParams).
Nothing in its loss holds the rest of the model in place; the guarded loop's utility floor does."""

from __future__ import annotations

from unlearning.methods.guarded import Objective, nll


def needs_reference(params) -> bool:
    return False


class GradientAscent(Objective):
    def loss(self, forget, retain):
        forget_nll = nll(self.model, self.tokenizer, forget)
        return -forget_nll, {"forget_nll": forget_nll.item()}


objective = GradientAscent
