"""UNDIAL (unlearning.methods.hyperparameters.UNDIALParams): self-distillation toward the original's
next-token distribution with the true token's logit lowered by β. The target is a fixed, bounded
distribution, so however long it trains the model cannot be driven to collapse the way ascent can:

    target_t = softmax(z_original,t − β·onehot(y_t))
    loss     = mean over forget tokens of CE(target_t, softmax(z_θ,t))  +  α·NLL(retain)
"""

from __future__ import annotations

import torch

from unlearning.methods.guarded import Objective, retain_nll, text_batch


def needs_reference(params) -> bool:
    return True


class UNDIAL(Objective):
    def loss(self, forget, retain):
        params = self.params
        batch = text_batch(self.model, self.tokenizer, forget)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        targets = batch["labels"][:, 1:]
        mask = targets != -100
        with self.reference.model(self.model) as original:
            teacher = original(**inputs).logits[:, :-1].float()
            lowered = teacher - params.beta * torch.nn.functional.one_hot(targets.clamp(min=0), teacher.shape[-1])
            wanted = torch.softmax(lowered, dim=-1)[mask]
        predicted = torch.log_softmax(self.model(**inputs).logits[:, :-1].float(), dim=-1)[mask]
        forget_loss = -(wanted * predicted).sum(-1).mean()
        kept, parts = retain_nll(self.model, self.tokenizer, retain, params.retain_weight)
        return params.forget_weight * forget_loss + kept, {"forget_undial": forget_loss.item(), **parts}


objective = UNDIAL
