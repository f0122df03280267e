"""Relearning attack: fine-tune briefly on half of the forget facts (A) and ask about the other
half (B). A model that only hid the subject relearns B from the cue of A; a model that never saw
the subject cannot. Every model gets the same budget, so only the excess over the retrained
reference counts (the verdict compares with it)."""

from dataclasses import dataclass

from audits.checks import AuditSets, MetricScore, mean_score, register
from audits.checks.knowledge_qa import KnowledgeQAParams, qa_correctness
from unlearning.lm import fine_tune


@dataclass(frozen=True)
class RelearningParams:
    steps: int = 10
    learning_rate: float = 2e-4
    seed: int = 0


@register("relearning_attack", RelearningParams)
def run(model, tokenizer, sets: AuditSets, params: RelearningParams, context) -> list[MetricScore]:
    # Alternate items, so each subject's facts fall on both sides.
    cue, probe = sets.forget_qa[::2], sets.forget_qa[1::2]
    if not cue or not probe:
        return [mean_score("relearned_qa_accuracy", [])]
    relearned = fine_tune(model, tokenizer, [sets.answered(item.question, item.answer) for item in cue],
                          steps=params.steps, learning_rate=params.learning_rate, seed=params.seed)
    qa = KnowledgeQAParams()
    cue_accuracy = qa_correctness(relearned, tokenizer, cue, qa, sets.question_template)
    return [mean_score("relearned_qa_accuracy", qa_correctness(relearned, tokenizer, probe, qa, sets.question_template),
                       cue_items=len(cue), cue_accuracy_after=sum(cue_accuracy) / len(cue_accuracy),
                       steps=params.steps, learning_rate=params.learning_rate)]
