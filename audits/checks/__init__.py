"""Verification audits, one module each, registered by name.

An audit runs against one model and returns metric scores with their per-item values, so that
verdicts, charts and CSV exports all read the same numbers. Each audit names the material it
reads: a language model's audits read AuditSets (texts, questions), a tabular model's read
RowAuditSets (feature rows); a suite runs the audits of its sets' kind. Pure ML code: no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class QAItem:
    """A question about one fact of one person, with wrong answers of the same kind (the truth ratio's)."""

    question: str
    answer: str
    subject: str = ""
    fact: str = ""
    perturbed_answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Canary:
    """An inserted secret: `text` contains `secret` once."""

    text: str
    secret: str

    def continuation(self, secret: str | None = None) -> tuple[str, str]:
        """(lead-in, continuation from the secret on), with `secret` (default: the real one) in its
        place; the space before the secret starts the continuation, as it tokenises there."""
        prefix, _, suffix = self.text.partition(self.secret)
        space = " " if prefix.endswith(" ") else ""
        return prefix.rstrip(" "), space + (secret or self.secret) + suffix


# How the demo world's models are asked (unlearning.world.qa_prompt): a model's own question
# template replaces it (ModelAsset.question_template).
DEMO_QUESTION_TEMPLATE = "Question: {question}\nAnswer:"


def ask(question: str, template: str = DEMO_QUESTION_TEMPLATE) -> str:
    """The prompt that asks a model `question`, in its template ("{question}" marks the place)."""
    return template.replace("{question}", question)


@dataclass(frozen=True)
class AuditSets:
    """F (forget), H (holdout: never trained, same distribution as F) and R (retain) material."""

    forget_texts: list[str]  # the membership panel's members (F)
    holdout_texts: list[str]  # ... and its non-members (H)
    forget_qa: list[QAItem] = field(default_factory=list)
    retain_qa: list[QAItem] = field(default_factory=list)
    extraction: list[tuple[str, str]] = field(default_factory=list)  # (prefix, true continuation) from F
    canaries: list[Canary] = field(default_factory=list)  # the subject's inserted canaries
    retain_texts: list[str] = field(default_factory=list)  # other people's texts (utility)
    general_texts: list[str] = field(default_factory=list)  # text about no one (utility)
    # Never-trained people's questions and extraction pairs: what forget metrics are compared with
    # when there is no retrained reference.
    holdout_qa: list[QAItem] = field(default_factory=list)
    holdout_extraction: list[tuple[str, str]] = field(default_factory=list)
    # How this model is asked a question: "{question}" marks where it goes (the rest is the model's
    # own format, a chat template's rendering included).
    question_template: str = DEMO_QUESTION_TEMPLATE
    # Whose each membership text is, for the person-level tests (audits.persons): a pseudonym per
    # forget text (the subject's salted reference, as on the certificate) and a person number per
    # holdout text (never-trained people are counted, never named). Empty: not tested per person.
    forget_people: list[str] = field(default_factory=list)
    holdout_people: list[int] = field(default_factory=list)

    def ask(self, question: str) -> str:
        return ask(question, self.question_template)

    def answered(self, question: str, answer: str) -> str:
        """A question with its answer, as the model saw such lines (demonstrations, relearning)."""
        return f"{self.ask(question)} {answer}"

    def on_never_trained_people(self) -> AuditSets:
        """The same audits' material with never-trained people in the forgotten people's place."""
        return replace(self, forget_texts=[], holdout_texts=[], forget_qa=self.holdout_qa,
                       extraction=self.holdout_extraction, canaries=[])


@dataclass(frozen=True)
class RowAuditSets:
    """A tabular model's F (forget rows), H (never-trained rows: the held-out test split) material."""

    forget_rows: list[dict]
    holdout_rows: list[dict]
    # A regressor's errors are divided by it, so that margins hold whatever the target's unit.
    target_variance: float = 1.0

    def on_never_trained_people(self) -> RowAuditSets:
        """Never-trained rows in the forgotten rows' place (a gap's other side)."""
        return replace(self, forget_rows=self.holdout_rows, holdout_rows=[])


@dataclass(frozen=True)
class SuiteContext:
    """What an audit of one model may know about the others: its role, and the retrained
    reference's scores (for reference-calibrated attacks); None when there is no reference or
    when this model is the reference."""

    role: str
    reference: dict[str, MetricScore] | None = None


@dataclass
class MetricScore:
    metric: str
    value: float
    sample_size: int
    per_item: dict[str, list[float]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # further figures of the same scores (e.g. TPR at low FPR)


@dataclass(frozen=True)
class Audit:
    name: str
    params_type: type
    run: Callable[..., list[MetricScore]]
    reads: type  # AuditSets (language models) or RowAuditSets (classifiers, regressors)


AUDITS: dict[str, Audit] = {}


def register(name: str, params_type: type, reads: type = AuditSets):
    def decorator(run):
        AUDITS[name] = Audit(name=name, params_type=params_type, run=run, reads=reads)
        return run

    return decorator


def mean_score(metric: str, items: list[float], **details) -> MetricScore:
    """A metric that is the mean of per-item values (nan when there are no items)."""
    value = sum(items) / len(items) if items else float("nan")
    return MetricScore(metric, value, len(items), {"items": items}, dict(details))


# The audits whose forget metrics have a never-trained counterpart: membership attacks carry their
# holdout side already, canary exposure has a known null, utility compares with the original.
COMPARABLE_WITH_NEVER_TRAINED = ("knowledge_qa", "extraction", "in_context_relearning", "relearning_attack",
                                 "quantisation", "row_fit")


def run_suite(model, tokenizer, sets: AuditSets | RowAuditSets, context: SuiteContext,
              only: Collection[str] | None = None) -> dict[str, MetricScore]:
    """Every registered audit of the sets' kind (or those named in `only`) with its default
    parameters; metric name → score."""
    scores: dict[str, MetricScore] = {}
    for audit in AUDITS.values():
        if not isinstance(sets, audit.reads) or (only is not None and audit.name not in only):
            continue
        for score in audit.run(model, tokenizer, sets, audit.params_type(), context):
            scores[score.metric] = score
    return scores


def with_never_trained(own: dict[str, MetricScore], never_trained: dict[str, MetricScore]) -> dict[str, MetricScore]:
    """Each item metric's scores with the same metric on never-trained people beside them, as
    {"items": [...], "holdout_items": [...]}: what the holdout comparison judges."""
    paired = dict(own)
    for metric, score in own.items():
        counterpart = never_trained.get(metric)
        if counterpart is None or "items" not in score.per_item or not counterpart.per_item.get("items"):
            continue
        paired[metric] = replace(score, per_item={**score.per_item, "holdout_items": counterpart.per_item["items"]},
                                 details={**score.details, "never_trained_value": counterpart.value,
                                          "never_trained_sample_size": counterpart.sample_size})
    return paired


def score_model(model, tokenizer, sets: AuditSets | RowAuditSets, context: SuiteContext,
                compare_with_never_trained: bool = False) -> dict[str, MetricScore]:
    """The suite on one model; without a reference to compare with, the model is also scored on
    never-trained people (`with_never_trained`)."""
    scores = run_suite(model, tokenizer, sets, context)
    if not compare_with_never_trained:
        return scores
    baseline = run_suite(model, tokenizer, sets.on_never_trained_people(), context, only=COMPARABLE_WITH_NEVER_TRAINED)
    return with_never_trained(scores, baseline)


def score_models(loaders: dict[str, Callable[[], tuple]], sets: AuditSets | RowAuditSets,
                 compare_with_never_trained: bool = False) -> dict[str, dict[str, MetricScore]]:
    """The suite on each role's model, loaded one at a time by `loaders[role]()` → (model, tokenizer);
    the reference first, since the calibrated attacks use its scores."""
    scores: dict[str, dict[str, MetricScore]] = {}
    for role in sorted(loaders, key=lambda role: role != "reference"):
        model, tokenizer = loaders[role]()
        context = SuiteContext(role=role, reference=scores.get("reference"))
        scores[role] = score_model(model, tokenizer, sets, context, compare_with_never_trained)
    return scores


def per_item_by_role(scores: dict[str, dict[str, MetricScore]]) -> dict[str, dict[str, dict]]:
    """role → metric → per-item scores: what audits.verdicts.judge reads."""
    return {role: {metric: score.per_item for metric, score in by_metric.items()} for role, by_metric in scores.items()}


from audits.checks import (  # noqa: E402,F401  (register themselves, in the order reports list them)
    knowledge_qa,
    extraction,
    membership,
    canary_exposure,
    in_context_relearning,
    relearning_attack,
    quantisation,
    utility,
    row_fit,
    row_membership,
    row_utility,
)
