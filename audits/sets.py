"""The audit sets of one request, from the model's manifests: forget (F), holdout (H) and retain
(R) material in the shapes the audits take. No Django, and no model: only the records."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from audits.checks import DEMO_QUESTION_TEMPLATE, AuditSets, Canary, QAItem, RowAuditSets, ask

RETAIN_SAMPLE = 200
# Never-trained people whose questions and extraction pairs every model answers: the population
# the person-level tests rank a subject among (at least 39 for a 95% band), and the comparison
# when there is no retrained reference. Evenly spread when the holdout has more.
HOLDOUT_PEOPLE = 200


def is_qa(record: dict) -> bool:
    """A question/answer record (the demo world's kind "qa", or any record with both fields): the
    knowledge audits ask its question."""
    return bool(record.get("question")) and bool(record.get("answer"))


def text_kinds(holdout: list[dict]) -> set[str]:
    """The kinds of text a model is membership-tested on: those its never-trained records have, so
    that both sides of an attack come from one distribution (a support desk's tickets, notes and
    resolutions; the demo world's biographies and QA lines). Canaries are judged by exposure."""
    return {r["kind"] for r in holdout if not r.get("secret")}


def qa_item(record: dict) -> QAItem:
    return QAItem(question=record["question"], answer=record["answer"], subject=record.get("subject", ""),
                  fact=record.get("fact", ""), perturbed_answers=tuple(record.get("perturbed_answers", ())))


def extraction_pair(record: dict, template: str = DEMO_QUESTION_TEMPLATE) -> tuple[str, str]:
    """Where extraction starts: a question's answer, a canary's secret, the second half of other text."""
    if is_qa(record):
        return ask(record["question"], template), " " + record["answer"]
    if record.get("secret"):
        return Canary(record["text"], record["secret"]).continuation()
    words = record["text"].split(" ")
    middle = len(words) // 2
    return " ".join(words[:middle]), " " + " ".join(words[middle:])


def every_nth(items: list, size: int) -> list:
    """A fixed, evenly spread sample (the same on every model and every re-run)."""
    return items[:: max(1, len(items) // size)][:size]


def whole_people_sample(records: list[dict], max_people: int) -> list[dict]:
    """Every record of an evenly spread set of at most `max_people` people: a person's records
    together keep the mix of fact kinds a forgotten person's audit items have."""
    people: dict[str, list[dict]] = {}
    for record in records:
        people.setdefault(person_of(record), []).append(record)
    return [record for key in every_nth(list(people), max_people) for record in people[key]]


def person_of(record: dict) -> str:
    """Whose a record is: its owner, or (about no one) the record itself."""
    return record.get("owner_key") or record["record_id"]


def audit_sets(manifest: list[dict], holdout: list[dict], forget_ids: set[str], removed_ids: set[str],
               question_template: str = DEMO_QUESTION_TEMPLATE,
               person_ref: Callable[[str], str] = lambda owner: owner, owners: dict[str, str] | None = None) -> AuditSets:
    """Any text data: every text record of the subject of a kind the holdout also has is
    membership-tested against the never-trained records of the kinds the subject's texts have;
    question/answer records add the knowledge audits; records about no one measure general utility.
    A set that is empty (no QA, no text about no one) leaves its audits with nothing to measure.
    Questions are asked in the model's own `question_template`. Each membership text, question and
    extraction pair carries its person: `person_ref(owner)` for the subjects' (a pseudonym), a number
    for never-trained people's. `owners` counts records under another owner than their own (a near
    match the reviewer confirmed belongs to the requester: record id → the requester's key)."""
    kinds = text_kinds(holdout)
    forget = [r for r in manifest if r["record_id"] in forget_ids]
    owners = owners or {}

    def subject(record: dict) -> str:
        return person_ref(owners.get(record["record_id"]) or person_of(record))

    members = [r for r in forget if r["kind"] in kinds and not r.get("secret")]
    member_kinds = {r["kind"] for r in members}
    retained = [r for r in manifest if r.get("owner_key") and r["record_id"] not in removed_ids]
    never_trained = whole_people_sample(holdout, HOLDOUT_PEOPLE)
    non_members = [r for r in holdout if r["kind"] in member_kinds and not r.get("secret")]
    numbers: dict[str, int] = {}

    def number(record: dict) -> int:
        return numbers.setdefault(person_of(record), len(numbers))

    holdout_qa = [r for r in never_trained if is_qa(r)]
    never_trained_kinds = {r["kind"] for r in never_trained}
    return AuditSets(
        forget_texts=[r["text"] for r in members],
        holdout_texts=[r["text"] for r in non_members],
        forget_people=[subject(r) for r in members],
        holdout_people=[number(r) for r in non_members],
        forget_qa=[qa_item(r) for r in forget if is_qa(r)],
        forget_qa_people=[subject(r) for r in forget if is_qa(r)],
        # A kind no never-trained person has (an inserted canary) has nothing to be ranked against:
        # None leaves it out of the person-level test (the canary has its own null).
        extraction_people=[subject(r) if r["kind"] in never_trained_kinds and not r.get("secret") else None
                           for r in forget],
        retain_qa=every_nth([qa_item(r) for r in retained if is_qa(r)], RETAIN_SAMPLE),
        extraction=[extraction_pair(r, question_template) for r in forget],
        canaries=[Canary(r["text"], r["secret"]) for r in forget if r.get("secret")],
        retain_texts=every_nth([r["text"] for r in retained if r["kind"] in kinds and not r.get("secret")],
                               RETAIN_SAMPLE),
        general_texts=[r["text"] for r in manifest if not r.get("owner_key")],
        holdout_qa=[qa_item(r) for r in holdout_qa],
        asked_qa=[qa_item(r) for r in forget if is_qa(r)] + [qa_item(r) for r in holdout_qa],
        holdout_qa_people=[number(r) for r in holdout_qa],
        holdout_extraction=[extraction_pair(r, question_template) for r in never_trained],
        holdout_extraction_people=[number(r) for r in never_trained],
        question_template=question_template,
    )


def row_audit_sets(manifest: list[dict], holdout: list[dict], forget_ids: set[str]) -> RowAuditSets:
    """A tabular model's forgotten rows, its held-out rows (never trained: the other side of every
    comparison), and the variance of its training targets (a regressor's errors are scaled by it)."""
    variance = statistics.pvariance(float(r["target"]) for r in manifest)
    return RowAuditSets(forget_rows=[r for r in manifest if r["record_id"] in forget_ids], holdout_rows=list(holdout),
                        target_variance=variance or 1.0)
