"""Verbatim extraction: greedy continuation of the first part of each forget text, scored with
ROUGE-L F1 against the true remainder (VerbMem, as in MUSE)."""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, register
from audits.metrics import rouge_l_f1
from unlearning.lm import greedy_continue


@dataclass(frozen=True)
class VerbatimParams:
    prefix_fraction: float = 0.5


@register("verbatim_extraction", VerbatimParams)
def run(model, tokenizer, sets: AuditSets, params: VerbatimParams) -> list[MetricScore]:
    bodies = tokenizer(sets.forget_texts, add_special_tokens=False)["input_ids"]
    prefixes, remainders = [], []
    for ids in bodies:
        cut = max(1, int(len(ids) * params.prefix_fraction))
        prefixes.append([tokenizer.bos_token_id] + ids[:cut])
        remainders.append(ids[cut:])
    continuations = greedy_continue(model, prefixes, max(len(r) for r in remainders), tokenizer.pad_token_id)
    rouge = [
        rouge_l_f1(tokenizer.decode(generated[: len(truth)], skip_special_tokens=True), tokenizer.decode(truth))
        for generated, truth in zip(continuations, remainders)
    ]
    return [MetricScore("verbatim_rouge_l", sum(rouge) / len(rouge), len(rouge), {"items": rouge})]
