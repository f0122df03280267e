"""NPO (unlearning.methods.hyperparameters.NPOParams): the forget texts treated as dispreferred
answers with no preferred one, so the loss saturates as their likelihood falls below the original's
instead of growing without bound as gradient ascent's does:

    loss = −(2/β)·mean log σ(−β·(log π_θ(y) − log π_ref(y)))  +  α·NLL(retain)
"""

from __future__ import annotations

import torch

from unlearning.methods.guarded import Objective, log_likelihoods, retain_nll, text_batch


def needs_reference(params) -> bool:
    return True


class NPO(Objective):
    def loss(self, forget, retain):
        params = self.params
        batch = text_batch(self.model, self.tokenizer, forget)
        with self.reference.model(self.model) as original:
            before, _ = log_likelihoods(original, batch)
        now, _ = log_likelihoods(self.model, batch)
        forget_loss = -(2 / params.beta) * torch.nn.functional.logsigmoid(-params.beta * (now - before)).mean()
        kept, parts = retain_nll(self.model, self.tokenizer, retain, params.retain_weight)
        return params.forget_weight * forget_loss + kept, {"forget_npo": forget_loss.item(), **parts}


objective = NPO
