"""Extraction: given the first part of a forget text, does the model produce the rest?

From one greedy generation and one teacher-forced pass per (prefix, continuation) pair:
- VerbMem (MUSE): ROUGE-L F1 of the greedy continuation against the truth;
- exact suffix match: the greedy continuation reproduces the truth token for token;
- Exact Memorization (Tirumala et al. 2022): share of continuation tokens that are the greedy choice;
- Extraction Strength: 1 − k*/|y| (audits.metrics.extraction_strength);
- sampled extraction: probability that one of n samples at temperature 1 reproduces the truth.
Greedy decoding reproduces y exactly iff every teacher-forced argmax hits, so the exact suffix
match needs no second generation.
"""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, mean_score, register
from audits.metrics import extraction_strength, rouge_l_f1, sampled_extraction_probability
from audits.scoring import continuation_ids, continuation_scores
from unlearning.lm import greedy_continue


@dataclass(frozen=True)
class ExtractionParams:
    samples: int = 100  # n of the sampled extraction probability


def verbatim_rouge(model, tokenizer, pairs: list[tuple[str, str]]) -> list[float]:
    split = [continuation_ids(tokenizer, prefix, continuation) for prefix, continuation in pairs]
    longest = max((len(truth) for _, truth in split), default=0)
    generated = greedy_continue(model, [prefix for prefix, _ in split], longest, tokenizer.pad_token_id)
    return [rouge_l_f1(tokenizer.decode(ids[: len(truth)], skip_special_tokens=True), tokenizer.decode(truth))
            for ids, (_, truth) in zip(generated, split)]


@register("extraction", ExtractionParams)
def run(model, tokenizer, sets: AuditSets, params: ExtractionParams, context) -> list[MetricScore]:
    scores = continuation_scores(model, tokenizer, sets.extraction)
    people = sets.extraction_people
    return [
        mean_score("verbatim_rouge_l", verbatim_rouge(model, tokenizer, sets.extraction), people),
        mean_score("exact_suffix_match", [float(s.argmax_hits.all()) for s in scores], people),
        mean_score("exact_memorization", [float(s.argmax_hits.mean()) for s in scores], people),
        mean_score("extraction_strength", [extraction_strength(s.argmax_hits) for s in scores], people),
        mean_score("sampled_extraction",
                   [sampled_extraction_probability(s.total_logprob, params.samples) for s in scores], people,
                   samples=params.samples),
    ]
