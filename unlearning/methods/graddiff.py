"""GradDiff: gradient ascent on the forget set, descent on the retained set
(unlearning.methods.hyperparameters.GradDiffParams):

    loss = −γ·NLL(forget) + α·NLL(retain)        or, with retain_loss="kl",
    loss = −γ·NLL(forget) + α·KL(original ‖ model) on retained texts' next-token distributions.
"""

from __future__ import annotations

import torch

from unlearning.methods.guarded import Objective, nll, retain_nll, text_batch


def needs_reference(params) -> bool:
    return params.retain_loss == "kl"  # the NLL retain term does not compare with the original


class GradDiff(Objective):
    def loss(self, forget, retain):
        params = self.params
        forget_nll = nll(self.model, self.tokenizer, forget)
        if params.retain_loss == "kl":
            kept, parts = self.retain_kl(retain)
        else:
            kept, parts = retain_nll(self.model, self.tokenizer, retain, params.retain_weight)
        return -params.forget_weight * forget_nll + kept, {"forget_nll": forget_nll.item(), **parts}

    def retain_kl(self, retain):
        batch = text_batch(self.model, self.tokenizer, retain)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with self.reference.model(self.model) as original:
            expected = torch.log_softmax(original(**inputs).logits.float(), dim=-1)
        predicted = torch.log_softmax(self.model(**inputs).logits.float(), dim=-1)
        mask = batch["attention_mask"].bool()
        per_token = torch.nn.functional.kl_div(predicted[mask], expected[mask], log_target=True, reduction="none").sum(-1)
        kl = per_token.mean()
        return self.params.retain_weight * kl, {"retain_kl": kl.item()}


objective = GradDiff
