"""Verification audits, one module each, registered by name.

An audit runs against one model and returns metric scores with their per-item values, so that
verdicts, charts and CSV exports all read the same numbers. Each audit names the material it
reads: a language model's audits read AuditSets (texts, questions), a tabular model's read
RowAuditSets (feature rows); a suite runs the audits of its sets' kind. Pure ML code: no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

from audits.persons import adjusted_across_families, combined_statistics, rank_among


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
    # The same for questions and extraction pairs (forget_qa / extraction, holdout_qa /
    # holdout_extraction): the knowledge, extraction and in-context families' person-level tests.
    # Every question the audits ask, of the subjects and of never-trained people: the in-context
    # audit leaves room for the longest, so that both sides get the same demonstrations.
    asked_qa: list[QAItem] = field(default_factory=list)
    forget_qa_people: list[str] = field(default_factory=list)
    extraction_people: list[str] = field(default_factory=list)
    holdout_qa_people: list[int] = field(default_factory=list)
    holdout_extraction_people: list[int] = field(default_factory=list)

    @property
    def tests_people(self) -> bool:
        """Whether the person-level tests beside the text-level audits can run on these sets."""
        return bool(self.forget_qa_people and self.holdout_qa_people
                    or self.extraction_people and self.holdout_extraction_people)

    def ask(self, question: str) -> str:
        return ask(question, self.question_template)

    def answered(self, question: str, answer: str) -> str:
        """A question with its answer, as the model saw such lines (demonstrations, relearning)."""
        return f"{self.ask(question)} {answer}"

    def on_never_trained_people(self) -> AuditSets:
        """The same audits' material with never-trained people in the forgotten people's place."""
        return replace(self, forget_texts=[], holdout_texts=[], forget_qa=self.holdout_qa,
                       extraction=self.holdout_extraction, canaries=[], forget_qa_people=self.holdout_qa_people,
                       extraction_people=self.holdout_extraction_people)


@dataclass(frozen=True)
class RowAuditSets:
    """A tabular model's F (forget rows), H (never-trained rows: the held-out test split) material."""

    forget_rows: list[dict]
    holdout_rows: list[dict]
    # A regressor's errors are divided by it, so that margins hold whatever the target's unit.
    target_variance: float = 1.0
    tests_people = False  # one row is one person: no population of people to rank among

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
    # Whose each of per_item["items"] is (a pseudonym, or a never-trained person's number); empty
    # where the audit does not know. Not stored: the person-level rows carry what they need.
    people: list = field(default_factory=list)


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


def mean_score(metric: str, items: list[float], people: list | None = None, **details) -> MetricScore:
    """A metric that is the mean of per-item values (nan when there are no items), with whose each
    item is where the audit knows."""
    value = sum(items) / len(items) if items else float("nan")
    return MetricScore(metric, value, len(items), {"items": items}, dict(details), list(people or []))


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


# Families tested per person beside their text-level metrics: the row that ranks each subject
# among the never-trained people on the family's measures combined (each: higher, knows more),
# and the audit that measures them on both sides.
PERSON_LEVEL_TESTS = {
    "knowledge_person_rank": ("knowledge_qa", ("forget_qa_accuracy", "forget_qa_rouge_l", "forget_truth_preference")),
    "extraction_person_rank": ("extraction", ("verbatim_rouge_l", "exact_suffix_match", "exact_memorization",
                                              "extraction_strength", "sampled_extraction")),
    "icl_person_rank": ("in_context_relearning", ("icl_leakage_rate",)),
}


def rank_score(metric: str, per_attack: list[dict[str, list[float]]], forget_people: list, holdout_people: list,
               **details) -> MetricScore:
    """One row per family: each subject's rank on the attacks combined (audits.persons), one item
    per subject (sorted by pseudonym): p_member as items, with p_over, the rank, the population and
    the subject's item count beside it, which is what rule person_band judges. The details keep
    every person's combined statistic, for adjusting across families (`adjust_across_families`)."""
    statistics = combined_statistics(per_attack, forget_people, holdout_people)
    subjects = sorted(statistics)
    ranks = [rank_among(statistics[s][1], list(statistics[s][0].values())).as_dict() for s in subjects]
    items = {"items": [r["p_member"] for r in ranks], "over": [r["p_over"] for r in ranks],
             "rank": [r["rank"] for r in ranks], "population": [r["population"] for r in ranks],
             "texts": [forget_people.count(subject) for subject in subjects]}
    return MetricScore(metric, sum(items["items"]) / len(subjects), len(subjects), items,
                       {"combined": dict(zip(subjects, ranks)), "statistics": statistics, **details})


def adjust_across_families(rows: dict[str, MetricScore]) -> None:
    """Each subject's p-values in every person-level row, adjusted for the number of families
    tested (audits.persons.adjusted_across_families), in place: the rows' items, p_over and
    population become the adjusted ones, the row's own kept in its details as "unadjusted"."""
    subjects = sorted({subject for row in rows.values() for subject in row.details["statistics"]})
    adjusted = {subject: adjusted_across_families({metric: row.details["statistics"][subject]
                                                   for metric, row in rows.items()
                                                   if subject in row.details["statistics"]})
                for subject in subjects}
    for metric, row in rows.items():
        own = sorted(row.details["statistics"])
        row.details["unadjusted"] = {"p_member": row.per_item["items"], "p_over": row.per_item["over"],
                                     "population": row.per_item["population"], "rank": row.per_item["rank"]}
        row.details["adjusted"] = {s: adjusted[s][metric] for s in own}
        row.details["adjusted_over"] = sorted(rows)
        row.per_item["items"] = [adjusted[s][metric]["p_member"] for s in own]
        row.per_item["over"] = [adjusted[s][metric]["p_over"] for s in own]
        row.per_item["population"] = [adjusted[s][metric]["population"] for s in own]
        row.per_item["rank"] = [adjusted[s][metric]["rank"] for s in own]
        row.value = sum(row.per_item["items"]) / len(own)


def person_row_subjects(scores: dict[str, MetricScore]) -> dict[str, list[str]]:
    """Each person-level row's subjects, in its items' order (rank_score sorts them)."""
    return {metric: sorted(score.details["combined"]) for metric, score in scores.items() if "combined" in score.details}


def person_level_scores(own: dict[str, MetricScore], never_trained: dict[str, MetricScore]) -> dict[str, MetricScore]:
    """PERSON_LEVEL_TESTS' rows, from a model's scores on the subjects and on never-trained people;
    a family's measures must group their items by the same people (the first measured one's)."""
    rows = {}
    for metric, (audit, measures) in PERSON_LEVEL_TESTS.items():
        pairs = [(own[m], never_trained[m]) for m in measures
                 if m in own and m in never_trained and own[m].people and never_trained[m].people]
        if not pairs:
            continue
        first_own, first_never = pairs[0]
        if all(person is None for person in first_own.people):
            continue  # only items no never-trained person has (an inserted canary): nobody to rank
        same = [(a, b) for a, b in pairs if a.people == first_own.people and b.people == first_never.people]
        per_measure = {a.metric: {"forget": a.per_item["items"], "holdout": b.per_item["items"]} for a, b in same}
        # The measures' items and whose they are, kept so that anyone can recompute the ranks.
        rows[metric] = rank_score(metric, list(per_measure.values()), first_own.people, first_never.people,
                                  measures=per_measure,
                                  people={"forget": first_own.people, "holdout": first_never.people})
    return rows


def score_model(model, tokenizer, sets: AuditSets | RowAuditSets, context: SuiteContext,
                compare_with_never_trained: bool = False, only: Collection[str] | None = None) -> dict[str, MetricScore]:
    """The suite (or the audits named in `only`) on one model, and the same audits on never-trained
    people where they are needed: always for the person-level tests (PERSON_LEVEL_TESTS), and,
    without a reference to compare with, for every audit that has a never-trained counterpart
    (`with_never_trained`)."""
    scores = run_suite(model, tokenizer, sets, context, only)
    person_audits = {audit for audit, _ in PERSON_LEVEL_TESTS.values()} if sets.tests_people else set()
    audits = person_audits | (set(COMPARABLE_WITH_NEVER_TRAINED) if compare_with_never_trained else set())
    audits &= set(AUDITS) if only is None else set(only)
    if not audits:
        return scores
    baseline = run_suite(model, tokenizer, sets.on_never_trained_people(), context, only=audits)
    if compare_with_never_trained:
        scores = with_never_trained(scores, baseline)
    scores |= person_level_scores(scores, baseline)
    adjust_across_families({metric: score for metric, score in scores.items() if "statistics" in score.details})
    return scores


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
