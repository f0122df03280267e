"""An ensemble of causal LMs that answers as one model (SISA's aggregation for language models;
Bourtoule et al. 2021 average the members' predictions). Two aggregations, both functions of the members alone (so exact unlearning stays exact):

- "sequence" (default): the uniform mixture of the members as distributions over whole texts,
  P(x) = mean_k P_k(x). Its next-token distribution is the average of the members' weighted by
  how likely each finds the text so far: P(next | x) = sum_k P_k(x) P_k(next | x) / sum_k P_k(x).
  A fact lives in one shard (a person's records share one), and only that shard finds a question
  naming the person likely, so its answer is not averaged away by shards that never saw them.
- "token": the plain mean of the members' next-token distributions at every position.

It offers what the audits and methods call on a model (forward with `.logits` and `.loss`,
`config`, `parameters`, deepcopy, train/eval), so every audit
runs on an ensemble unchanged. Logits are the log of the averaged probabilities: a softmax of
them gives back the mixture exactly. Pure ML code: no Django.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class EnsembleOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


AGGREGATIONS = ("sequence", "token")


class EnsembleCausalLM(torch.nn.Module):
    def __init__(self, members: Sequence[torch.nn.Module], aggregation: str = "sequence"):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r} (known: {', '.join(AGGREGATIONS)})")
        self.members = torch.nn.ModuleList(members)
        self.aggregation = aggregation

    @property
    def config(self):
        """The first member's: every member shares the tokenizer and the context window."""
        return self.members[0].config

    def forward(self, input_ids, attention_mask=None, labels=None, **_ignored) -> EnsembleOutput:
        log_probs = torch.stack([torch.log_softmax(member(input_ids=input_ids, attention_mask=attention_mask).logits.float(), -1)
                                 for member in self.members])  # (members, batch, positions, vocabulary)
        if self.aggregation == "sequence":
            log_probs = log_probs + self._log_posterior(log_probs, input_ids, attention_mask)[..., None]
        else:
            log_probs = log_probs - math.log(len(self.members))
        logits = torch.logsumexp(log_probs, dim=0)
        loss = None
        if labels is not None:  # the causal-LM loss of the mixture, as transformers computes it for one model
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
        return EnsembleOutput(logits=logits, loss=loss)

    @staticmethod
    def _log_posterior(log_probs: torch.Tensor, input_ids, attention_mask) -> torch.Tensor:
        """log of each member's weight at each position: its likelihood of the tokens up to and
        including that position, normalised over members (padding adds nothing)."""
        token_log_probs = log_probs[:, :, :-1].gather(-1, input_ids[None, :, 1:, None].expand(len(log_probs), -1, -1, 1))[..., 0]
        if attention_mask is not None:
            token_log_probs = token_log_probs * attention_mask[None, :, 1:]
        prefix = torch.cat([torch.zeros_like(token_log_probs[:, :, :1]), token_log_probs.cumsum(-1)], dim=-1)
        return torch.log_softmax(prefix, dim=0)
