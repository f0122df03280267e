"""Training manifests: JSONL files of records (record_id, owner_key, kind, text; QA records add
subject, question, answer, fact, perturbed_answers; canary records add secret). Tabular records
are of kind "row" and carry features (a list of numbers) and a target instead of text.

Stored content-addressed (`<store>/datasets/<sha256>.jsonl`) so that a model version's lineage
points at exactly the bytes it was trained on. Pure Python: no torch, no Django.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from unlearning.store import store_file

REQUIRED_FIELDS = ("record_id", "kind", "text")
ROW_FIELDS = ("record_id", "kind", "features", "target")


def write_manifest(records: Iterable[dict], store: Path) -> tuple[str, Path]:
    lines = [json.dumps(record, sort_keys=True, ensure_ascii=False) for record in records]
    return store_file(("\n".join(lines) + "\n").encode(), store, "datasets", ".jsonl")


def read_manifest(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: a record is a JSON object, not {type(record).__name__}")
            fields = ROW_FIELDS if record.get("kind") == "row" else REQUIRED_FIELDS
            missing = [field for field in fields if record.get(field) in (None, "", [])]
            if missing:
                raise ValueError(f"{path}:{number}: record lacks {', '.join(missing)}")
            records.append(record)
    return records


def record_sha256(record: dict) -> str:
    """The hash of what a model learns from the record: its text, or a row's features and target."""
    if "text" in record:
        content = record["text"]
    else:
        content = json.dumps({"features": record["features"], "target": record["target"]}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()


def lineage_records(training: Iterable[dict]) -> list[dict]:
    """Per training record what the service registers: id, owner, kind and content hash."""
    return [{"record_id": r["record_id"], "owner_key": r.get("owner_key"), "kind": r["kind"],
             "content_sha256": record_sha256(r)} for r in training]


def forget_set_sha256(records: Iterable[dict]) -> str:
    """One hash for a set of records, independent of their order."""
    digest = hashlib.sha256()
    for record_id, content in sorted((r["record_id"], record_sha256(r)) for r in records):
        digest.update(f"{record_id}\0{content}\n".encode())
    return digest.hexdigest()
