"""The audit sets of one request, from the model's manifests: forget (F), holdout (H) and retain
(R) material in the shapes the audits take. No Django, and no model: only the records."""

from __future__ import annotations

from audits.checks import AuditSets, Canary, QAItem
from unlearning.world import qa_prompt

RETAIN_SAMPLE = 200
MIA_KINDS = ("biography", "qa")  # same kinds on both sides, so the attack sees one distribution


def qa_item(record: dict) -> QAItem:
    return QAItem(question=record["question"], answer=record["answer"], subject=record.get("subject", ""),
                  fact=record.get("fact", ""), perturbed_answers=tuple(record.get("perturbed_answers", ())))


def extraction_pair(record: dict) -> tuple[str, str]:
    """Where extraction starts: a question's answer, a canary's secret, the second half of other text."""
    if record["kind"] == "qa":
        return qa_prompt(record["question"]), " " + record["answer"]
    if record.get("secret"):
        return Canary(record["text"], record["secret"]).continuation()
    words = record["text"].split(" ")
    middle = len(words) // 2
    return " ".join(words[:middle]), " " + " ".join(words[middle:])


def every_nth(items: list, size: int) -> list:
    """A fixed, evenly spread sample (the same on every model and every re-run)."""
    return items[:: max(1, len(items) // size)][:size]


def audit_sets(manifest: list[dict], holdout: list[dict], forget_ids: set[str], removed_ids: set[str]) -> AuditSets:
    forget = [r for r in manifest if r["record_id"] in forget_ids]
    retained = [r for r in manifest if r.get("owner_key") and r["record_id"] not in removed_ids]
    return AuditSets(
        forget_texts=[r["text"] for r in forget if r["kind"] in MIA_KINDS],
        holdout_texts=[r["text"] for r in holdout if r["kind"] in MIA_KINDS],
        forget_qa=[qa_item(r) for r in forget if r["kind"] == "qa"],
        retain_qa=every_nth([qa_item(r) for r in retained if r["kind"] == "qa"], RETAIN_SAMPLE),
        extraction=[extraction_pair(r) for r in forget],
        canaries=[Canary(r["text"], r["secret"]) for r in forget if r.get("secret")],
        retain_texts=every_nth([r["text"] for r in retained if r["kind"] in MIA_KINDS], RETAIN_SAMPLE),
        general_texts=[r["text"] for r in manifest if not r.get("owner_key")],
    )
