"""What an ML operator hands in, checked before anything is trained, copied or stored: manifests
(their records, owners and holdout), a model's name and question template, and where the checkpoint
comes from. The same checks serve the management commands (one line, non-zero exit) and the API
(problem+json); each failure is an IntakeRejected with the line to show. Torch-free: the web
process runs these.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections import Counter
from pathlib import Path
from uuid import uuid4

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email, validate_slug

from compliance.errors import ServiceError
from unlearning.manifest import read_manifest, record_sha256
from unlearning.models import ModelAsset, ModelRegistration, RegistrationStatus, TrainingRecord

RECORD_ID_LENGTH = TrainingRecord._meta.get_field("record_id").max_length
KIND_LENGTH = TrainingRecord._meta.get_field("kind").max_length
OWNER_KEY_LENGTH = TrainingRecord._meta.get_field("owner_key").max_length
NAME_LENGTH = ModelAsset._meta.get_field("name").max_length
INCOMING = "incoming"  # the model store's folder of uploads waiting for a worker


class IntakeRejected(ServiceError):
    title, code = "Model input rejected", "model_input_rejected"


def read_records(path: Path | str, kind: str = "text", label: str | None = None) -> list[dict]:
    """A manifest's records (of text, or tabular rows when `kind` is "row"), or one line saying
    what is wrong with it. `label` names the manifest in that line (an upload's own file name)."""
    label = label or str(path)
    try:
        records = read_manifest(path)
    except UnicodeDecodeError:
        raise IntakeRejected(f"{label}: not UTF-8 text (a manifest is JSON Lines)") from None
    except (OSError, ValueError) as error:  # ValueError covers malformed JSON too
        raise IntakeRejected(f"{label}: {str(error).replace(str(path), label)}") from None
    if not records:
        raise IntakeRejected(f"{label}: no records")
    text_fields = ("record_id", "owner_key", "kind", "text", "question", "answer")
    if mistyped := next(((r, f) for r in records for f in text_fields if f in r and r[f] is not None
                         and not isinstance(r[f], str)), None):
        record, field = mistyped
        raise IntakeRejected(f"{label}: record {str(record.get('record_id'))[:40]}: {field} is "
                             f"{type(record[field]).__name__}, not text")
    if wrong := next((r for r in records if (r["kind"] == "row") != (kind == "row")), None):
        use = "train_tabular_model" if kind == "text" else "train_governed_model"
        raise IntakeRejected(f"{label}: record {wrong['record_id']} is of kind {wrong['kind']!r}: use {use} for it")
    if unreachable := next((r for r in records if r.get("owner_key") and not is_request_email(r["owner_key"])
                            or len(r.get("owner_key") or "") > OWNER_KEY_LENGTH), None):
        raise IntakeRejected(f"{label}: record {unreachable['record_id']}: owner_key {unreachable['owner_key']!r} is "
                             "not an e-mail address in lower case, so no removal request could ever name it")
    return records


def is_request_email(owner_key) -> bool:
    """What a request's subject key can equal: requests store their e-mail address in lower case."""
    try:
        validate_email(owner_key)
    except ValidationError:
        return False
    return owner_key == owner_key.lower()


def check_name(name: str) -> None:
    """A free slug: no governed model and no registration still under way has it."""
    try:
        validate_slug(name)
    except ValidationError:
        raise IntakeRejected(f"name {name!r}: use letters, digits, hyphens and underscores") from None
    if len(name) > NAME_LENGTH:
        raise IntakeRejected(f"name {name[:40]!r}…: at most {NAME_LENGTH} characters")
    if ModelAsset.objects.filter(name=name).exists():
        raise IntakeRejected(f"a model named {name} is already registered")
    if ModelRegistration.objects.filter(name=name, status__in=RegistrationStatus.UNDER_WAY).exists():
        raise IntakeRejected(f"a model named {name} is being registered")


def question_template(template: str | None) -> str | None:
    """The operator's question format, with "\\n" typed on a command line meaning a newline."""
    if template is None or template == "":
        return None
    if "{question}" not in template:
        raise IntakeRejected("the question template needs {question} where the question goes")
    return template.replace("\\n", "\n")


def check_lineage(label: str, training: list[dict], never_trained: list[dict]) -> None:
    """Every training record names its owner (the lineage a request resolves through) once, in
    fields the lineage can hold, and no never-trained record is a training record (the audits'
    non-members must be non-members)."""
    if twice := [record_id for record_id, count in Counter(r["record_id"] for r in training).items() if count > 1]:
        raise IntakeRejected(f"{label}: record {twice[0]} appears {len(twice) > 1 and 'with others ' or ''}twice")
    for field, longest in (("record_id", RECORD_ID_LENGTH), ("kind", KIND_LENGTH)):
        if too_long := next((r for r in training if len(str(r[field])) > longest), None):
            raise IntakeRejected(f"{label}: record {too_long['record_id'][:40]}: its {field} is longer than {longest} "
                                 "characters")
    if ownerless := [r["record_id"] for r in training if not r.get("owner_key")]:
        raise IntakeRejected(f"{label}: {len(ownerless)} records have no owner_key (e.g. {ownerless[0]}): a request "
                             "could never reach them")
    trained_ids, trained_content = {r["record_id"] for r in training}, {record_sha256(r) for r in training}
    if overlap := [r["record_id"] for r in never_trained if r["record_id"] in trained_ids
                   or record_sha256(r) in trained_content]:
        raise IntakeRejected(f"the holdout shares {len(overlap)} records with the training manifest (e.g. {overlap[0]}): "
                             "never-trained records must be ones the model never saw")


def import_folder(relative: str, root: Path) -> Path:
    """A checkpoint folder an operator placed under the import folder (shared storage, for weights
    too large to upload), named relative to it; nothing outside it."""
    root = Path(root).resolve()
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root) or folder == root:
        raise IntakeRejected(f"checkpoint_path {relative!r}: name a folder inside the import folder")
    if not folder.is_dir():
        raise IntakeRejected(f"checkpoint_path {relative!r}: no such folder in the import folder")
    return folder


def received_checkpoint(uploaded) -> Path:
    """An uploaded checkpoint archive, kept in the store's incoming folder for the worker that
    registers it (shared storage, like the store)."""
    path = save_upload(uploaded, settings.CHECKPOINT_UPLOAD_MAX_BYTES, "checkpoint")
    if not (zipfile.is_zipfile(path) or tarfile.is_tarfile(path)):
        path.unlink()
        raise IntakeRejected(f"checkpoint {uploaded.name!r}: not a zip or tar archive (of the folder save_pretrained "
                             "wrote)")
    return path


def received_records(uploaded, what: str) -> list[dict]:
    """An uploaded JSONL manifest's records, checked; the upload itself is not kept (its records
    are stored content-addressed once the registration is accepted)."""
    path = save_upload(uploaded, settings.MANIFEST_UPLOAD_MAX_BYTES, what)
    try:
        return read_records(path, label=f"{what} {uploaded.name!r}")
    finally:
        path.unlink()


def save_upload(uploaded, max_bytes: int, what: str) -> Path:
    if uploaded.size > max_bytes:
        raise IntakeRejected(f"{what} {uploaded.name!r} is {uploaded.size / 2**20:.0f} MiB, more than the "
                             f"{max_bytes / 2**20:.0f} MiB allowed")
    folder = Path(settings.MODEL_STORE_DIR) / INCOMING
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid4().hex}{''.join(Path(uploaded.name).suffixes[-2:])[:16]}"
    with open(path, "wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return path
