"""Utility: what unlearning cost everyone else. Mean per-token loss (nats; perplexity = e^loss)
on retained people's texts and on the world's general text, judged against the original."""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, mean_score, register
from unlearning.lm import text_losses


@dataclass(frozen=True)
class UtilityParams:
    pass


@register("utility", UtilityParams)
def run(model, tokenizer, sets: AuditSets, params: UtilityParams, context) -> list[MetricScore]:
    return [mean_score("retain_text_loss", text_losses(model, tokenizer, sets.retain_texts)),
            mean_score("general_text_loss", text_losses(model, tokenizer, sets.general_texts))]
