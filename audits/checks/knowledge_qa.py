"""Knowledge: does the model still answer questions about the subject (and about everyone else),
and does it still prefer the subject's true answers to plausible wrong ones (TOFU's truth ratio)?"""

from dataclasses import dataclass

import numpy as np

from audits.checks import DEMO_QUESTION_TEMPLATE, AuditSets, MetricScore, QAItem, ask, mean_score, register
from audits.metrics import rouge_l_f1, truth_preference, truth_ratio
from audits.scoring import continuation_scores
from unlearning.lm import greedy_generate
from unlearning.world import answer_is_correct


@dataclass(frozen=True)
class KnowledgeQAParams:
    max_new_tokens: int = 12


def greedy_answers(model, tokenizer, items: list[QAItem], max_new_tokens: int,
                   template: str = DEMO_QUESTION_TEMPLATE) -> list[str]:
    return greedy_generate(model, tokenizer, [ask(item.question, template) for item in items], max_new_tokens)


def qa_correctness(model, tokenizer, items: list[QAItem], params: KnowledgeQAParams,
                   template: str = DEMO_QUESTION_TEMPLATE) -> list[float]:
    answers = greedy_answers(model, tokenizer, items, params.max_new_tokens, template)
    return [float(answer_is_correct(generated, item.answer)) for generated, item in zip(answers, items)]


def truth_ratios(model, tokenizer, items: list[QAItem], template: str = DEMO_QUESTION_TEMPLATE) -> list[float]:
    """One truth ratio per item that has wrong answers, from one batched pass."""
    items = [item for item in items if item.perturbed_answers]
    pairs = [(ask(item.question, template), " " + answer)
             for item in items for answer in (item.answer, *item.perturbed_answers)]
    scores = iter(continuation_scores(model, tokenizer, pairs))
    ratios = []
    for item in items:
        true = next(scores).mean_logprob
        ratios.append(truth_ratio(true, [next(scores).mean_logprob for _ in item.perturbed_answers]))
    return ratios


@register("knowledge_qa", KnowledgeQAParams)
def run(model, tokenizer, sets: AuditSets, params: KnowledgeQAParams, context) -> list[MetricScore]:
    answers = greedy_answers(model, tokenizer, sets.forget_qa, params.max_new_tokens, sets.question_template)
    ratios = truth_ratios(model, tokenizer, sets.forget_qa, sets.question_template)
    people = sets.forget_qa_people
    # Truth ratios exist for the questions that have wrong answers only.
    ratio_people = [person for person, item in zip(people, sets.forget_qa) if item.perturbed_answers]
    return [
        mean_score("forget_qa_accuracy", [float(answer_is_correct(a, item.answer)) for a, item in zip(answers, sets.forget_qa)],
                   people),
        mean_score("forget_qa_rouge_l", [rouge_l_f1(a, item.answer) for a, item in zip(answers, sets.forget_qa)], people),
        # Raw ratios are heavy-tailed: their distribution feeds the KS forget quality, their
        # bounded form the mean that is judged.
        MetricScore("forget_truth_ratio", float(np.median(ratios)) if ratios else float("nan"), len(ratios),
                    {"items": ratios}, {"statistic": "median"}),
        mean_score("forget_truth_preference", [truth_preference(r) for r in ratios], ratio_people),
        mean_score("retain_qa_accuracy", qa_correctness(model, tokenizer, sets.retain_qa, params, sets.question_template)),
    ]
