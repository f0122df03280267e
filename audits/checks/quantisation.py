"""Quantisation: unlearning by small weight changes can be undone by rounding the weights
(Zhang et al. 2024, "Catastrophic failure of LLM unlearning via quantization"). The membership
panel and forget-QA are re-run on a copy whose linear-layer weights are rounded to int8 per
output channel (symmetric round-to-nearest): the numbers an int8 weight-only deployment computes.
The tied output embedding stays in full precision, as int8 deployments usually keep it."""

import copy
from dataclasses import dataclass, replace

import torch
from transformers.pytorch_utils import Conv1D

from audits.checks import AuditSets, MetricScore, mean_score, register
from audits.checks import membership
from audits.checks.knowledge_qa import KnowledgeQAParams, qa_correctness


@dataclass(frozen=True)
class QuantisationParams:
    bits: int = 8


@torch.no_grad()
def quantised_copy(model, bits: int):
    quantised = copy.deepcopy(model)
    # Every input embedding (one per member of an ensemble), which the output layer may share.
    tied = {id(module.get_input_embeddings().weight) for module in quantised.modules()
            if hasattr(module, "get_input_embeddings")}
    levels = 2 ** (bits - 1) - 1
    for module in quantised.modules():
        if not isinstance(module, (torch.nn.Linear, Conv1D)) or id(module.weight) in tied:
            continue
        # Linear stores (out, in), GPT-2's Conv1D (in, out): one scale per output channel either way.
        reduce_dim = 1 if isinstance(module, torch.nn.Linear) else 0
        scale = module.weight.abs().amax(dim=reduce_dim, keepdim=True).clamp_min(1e-12) / levels
        module.weight.copy_(torch.round(module.weight / scale).clamp(-levels, levels) * scale)
    return quantised


@register("quantisation", QuantisationParams)
def run(model, tokenizer, sets: AuditSets, params: QuantisationParams, context) -> list[MetricScore]:
    quantised = quantised_copy(model, params.bits)
    prefix = f"int{params.bits}_"
    # The text-level attacks only: the person-level test is the full-precision model's (its policy row).
    without_people = replace(sets, forget_people=[], holdout_people=[])
    panel = membership.run(quantised, tokenizer, without_people, membership.MembershipParams(reference_calibrated=False),
                           context)
    qa = mean_score("forget_qa_accuracy", qa_correctness(quantised, tokenizer, sets.forget_qa, KnowledgeQAParams(),
                                                          sets.question_template))
    return [replace(score, metric=prefix + score.metric) for score in [*panel, qa]]
