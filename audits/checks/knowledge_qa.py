"""Knowledge QA: does the model still answer questions about the subject (and about everyone else)?"""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, register
from audits.metrics import answer_is_correct
from unlearning.lm import greedy_generate
from unlearning.world import qa_prompt


@dataclass(frozen=True)
class KnowledgeQAParams:
    max_new_tokens: int = 12


def qa_correctness(model, tokenizer, pairs, params: KnowledgeQAParams) -> list[float]:
    answers = greedy_generate(model, tokenizer, [qa_prompt(q) for q, _ in pairs], params.max_new_tokens)
    return [float(answer_is_correct(generated, truth)) for generated, (_, truth) in zip(answers, pairs)]


@register("knowledge_qa", KnowledgeQAParams)
def run(model, tokenizer, sets: AuditSets, params: KnowledgeQAParams) -> list[MetricScore]:
    scores = []
    for metric, pairs in (("forget_qa_accuracy", sets.forget_qa), ("retain_qa_accuracy", sets.retain_qa)):
        correct = qa_correctness(model, tokenizer, pairs, params)
        scores.append(MetricScore(metric, sum(correct) / len(correct), len(correct), {"items": correct}))
    return scores
