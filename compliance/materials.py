"""What a data owner hands in with a request for the models to forget: documents (their text: the
bytes themselves are not kept) and question/answer pairs. Checked here, before anything is stored:
size, type, count, and that there is text to read. Legal reviews the material before any job may
use it (compliance.services.approve_request)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import PurePath

from django.conf import settings

from compliance.errors import ServiceError

TEXT_SUFFIXES = (".txt", ".md", ".csv", ".json", ".jsonl", ".html", ".xml", ".eml")
PDF_SUFFIX = ".pdf"
QA_SEPARATOR = "|"


class MaterialRejected(ServiceError):
    title, code = "Material rejected", "material_rejected"


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    sha256: str  # of the uploaded bytes
    size: int


def read_document(name: str, data: bytes) -> Document:
    """A document's text, or one line saying why it cannot be taken."""
    name = PurePath(name or "document").name[:200]
    suffix = PurePath(name).suffix.lower()
    if suffix == PDF_SUFFIX:
        text = pdf_text(name, data)
    elif suffix in TEXT_SUFFIXES:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise MaterialRejected(f"{name} is not UTF-8 text") from None
        if "\x00" in text:
            raise MaterialRejected(f"{name} is not text")
    else:
        raise MaterialRejected(f"{name}: send a PDF or a text file ({', '.join(TEXT_SUFFIXES)})")
    text = text.replace("\x00", "")[:TEXT_KEPT]  # PostgreSQL stores no NUL (a PDF's text may hold one)
    if not text.strip():
        raise MaterialRejected(f"{name} holds no text we can read" + (" (a scan? send its text instead)"
                                                                       if suffix == PDF_SUFFIX else ""))
    return Document(name, text.strip(), hashlib.sha256(data).hexdigest(), len(data))


PDF_PAGES_READ = 200
TEXT_KEPT = 200_000  # characters of one document


def pdf_text(name: str, data: bytes) -> str:
    from pypdf import PdfReader

    if not data.startswith(b"%PDF-"):
        raise MaterialRejected(f"{name} is not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        text = "" if encrypted else "\n".join(page.extract_text() or "" for page in reader.pages[:PDF_PAGES_READ])
    except Exception:  # pypdf raises many kinds on hostile or broken files: none may reach the owner
        raise MaterialRejected(f"{name} is a damaged PDF") from None
    if encrypted:
        raise MaterialRejected(f"{name} is encrypted: send it without a password")
    return text


def check_uploads(files: list[tuple[str, int]]) -> None:
    """Documents by (name, size), refused before any is read: too many, or one too large."""
    if len(files) > settings.REQUEST_DOCUMENTS_MAX:
        raise MaterialRejected(f"At most {settings.REQUEST_DOCUMENTS_MAX} documents.")
    for name, size in files:
        if size > settings.REQUEST_DOCUMENT_MAX_BYTES:
            raise MaterialRejected(f"{name} is larger than {settings.REQUEST_DOCUMENT_MAX_BYTES / 2**20:.0f} MiB.")


def parse_qa_pairs(text: str) -> list[tuple[str, str]]:
    """One pair per line, `question | answer`; blank lines are skipped."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        question, separator, answer = line.partition(QA_SEPARATOR)
        if not separator or not question.strip() or not answer.strip():
            raise MaterialRejected(f"line {number}: write a question, then {QA_SEPARATOR}, then its answer")
        pairs.append((question.strip()[:1000], answer.strip()[:1000]))
    if len(pairs) > settings.REQUEST_QA_PAIRS_MAX:
        raise MaterialRejected(f"at most {settings.REQUEST_QA_PAIRS_MAX} question/answer pairs per request")
    return pairs
