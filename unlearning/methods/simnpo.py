"""SimNPO (unlearning.methods.hyperparameters.SimNPOParams): NPO with the reference model replaced
by a length-normalised margin, so long and short forget texts weigh alike and no copy of the
original is kept:

    loss = −(2/β)·mean log σ(−(β/|y|)·log π_θ(y) − δ)  +  λ·NLL(retain)
"""

from __future__ import annotations

import torch

from unlearning.methods.guarded import Objective, log_likelihoods, retain_nll, text_batch


def needs_reference(params) -> bool:
    return False


class SimNPO(Objective):
    def loss(self, forget, retain):
        params = self.params
        likelihood, tokens = log_likelihoods(self.model, text_batch(self.model, self.tokenizer, forget))
        margin = -(params.beta / tokens.clamp(min=1)) * likelihood - params.delta
        forget_loss = -(2 / params.beta) * torch.nn.functional.logsigmoid(margin).mean()
        kept, parts = retain_nll(self.model, self.tokenizer, retain, params.retain_weight)
        return params.forget_weight * forget_loss + kept, {"forget_simnpo": forget_loss.item(), **parts}


objective = SimNPO
