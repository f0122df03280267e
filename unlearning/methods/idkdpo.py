"""IdkDPO (unlearning.methods.hyperparameters.IdkDPOParams): DPO with a refusal as the preferred
answer and the true one as the dispreferred, so the model learns to decline rather than to babble:

    margin = [log π_θ(idk) − log π_ref(idk)] − [log π_θ(y) − log π_ref(y)]
    loss   = −(2/β)·mean log σ(β·margin)  +  α·NLL(retain)

(scaled by 2/β as NPO is, which is DPO without its preferred answer). A forget text's prompt is its
question ("…\nAnswer:"); a text that is not a question is split after its first third of words.
The refusals are a fixed list, cycled (TOFU's idk set has a hundred such lines).
"""

from __future__ import annotations

import torch

from unlearning.lm import context_length, encode, prompt_ids
from unlearning.methods.guarded import Objective, log_likelihoods, retain_nll
from unlearning.numerics import on_device

ANSWER_MARK = "\nAnswer:"
REFUSALS = (
    " I don't know.", " I'm not able to answer that.", " I have no information about that.",
    " I can't help with that question.", " That is not something I know.", " I'm not sure.",
    " I don't have that information.", " I cannot say.",
)


def needs_reference(params) -> bool:
    return True


def prompt_and_answer(text: str) -> tuple[str, str]:
    if ANSWER_MARK in text:
        cut = text.rindex(ANSWER_MARK) + len(ANSWER_MARK)
        return text[:cut], text[cut:]
    words = text.split(" ")
    third = max(1, len(words) // 3)
    return " ".join(words[:third]), " " + " ".join(words[third:])


def answers_batch(model, tokenizer, prompts, answers) -> dict[str, torch.Tensor]:
    """Prompt + answer (+ <eos>), with only the answer's tokens labelled."""
    limit = context_length(model)
    rows, labels = [], []
    for prompt, answer in zip(prompts, answers):
        asked = prompt_ids(tokenizer, prompt)
        answered = encode(tokenizer, [answer], limit)[0][1 if tokenizer.bos_token_id is not None else 0:]
        ids = (asked + answered)[:limit]
        rows.append(ids)
        labels.append(([-100] * len(asked) + answered)[:limit])
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    batch = {
        "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows]),
        "labels": torch.tensor([row + [-100] * (width - len(row)) for row in labels]),
    }
    return on_device(batch, model)


class IdkDPO(Objective):
    def loss(self, forget, retain):
        params = self.params
        prompts, answers = zip(*map(prompt_and_answer, forget))
        refusals = [REFUSALS[hash_index(prompt)] for prompt in prompts]
        preferred = answers_batch(self.model, self.tokenizer, prompts, refusals)
        dispreferred = answers_batch(self.model, self.tokenizer, prompts, answers)
        with self.reference.model(self.model) as original:
            preferred_before, dispreferred_before = (likelihood(original, b) for b in (preferred, dispreferred))
        margin = (likelihood(self.model, preferred) - preferred_before) - (likelihood(self.model, dispreferred)
                                                                           - dispreferred_before)
        forget_loss = -(2 / params.beta) * torch.nn.functional.logsigmoid(params.beta * margin).mean()
        kept, parts = retain_nll(self.model, self.tokenizer, retain, params.retain_weight)
        return params.forget_weight * forget_loss + kept, {"forget_dpo": forget_loss.item(), **parts}


def hash_index(prompt: str) -> int:
    """The same refusal for the same prompt on every step and run (Python's str hash is salted)."""
    return sum(prompt.encode()) % len(REFUSALS)


def likelihood(model, batch) -> torch.Tensor:
    return log_likelihoods(model, batch)[0]


objective = IdkDPO
