"""Evidence as it went to Stripe, readable afterwards: each text field with its label, each file
with a preview (our copy of the bytes we uploaded), and the Visa CE 3.0 prior payments."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pypdfium2

from db.models import DisputeEvidenceFile
from db.repositories import disputes as repo
from db.session import UnitOfWork
from services import compelling_evidence as ce
from services import dispute_evidence as ev

MIME = {"pdf": "application/pdf", "jpg": "image/jpeg", "png": "image/png"}
PREVIEW_WIDTH_PX = 480


@lru_cache(maxsize=64)
def pdf_preview(content: bytes) -> tuple[bytes | None, int | None]:
    """The first page of a PDF as a PNG (about PREVIEW_WIDTH_PX wide) and its page count, or
    (None, None) when PDFium cannot read it (Stripe only checks the file's type and size)."""
    try:
        document = pypdfium2.PdfDocument(content)
    except pypdfium2.PdfiumError:
        return None, None
    try:
        pages = len(document)
        if not pages:
            return None, 0
        page = document[0]
        width = page.get_width() or PREVIEW_WIDTH_PX
        image = page.render(scale=min(2.0, PREVIEW_WIDTH_PX / width)).to_pil()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), pages
    except pypdfium2.PdfiumError:
        return None, None
    finally:
        document.close()


def keep_copy(uow: UnitOfWork, dispute_id: str, evidence_field: str, file_id: str, filename: str, content: bytes,
              *, actor: str) -> None:
    """Inside the caller's unit of work: keep the uploaded bytes once per Stripe file id."""
    if repo.has_file_copy(uow, file_id):
        return
    repo.add_file_copy(uow, DisputeEvidenceFile(
        dispute_id=dispute_id, evidence_field=evidence_field, stripe_file_id=file_id, filename=filename,
        file_type=ev.file_type(content) or "bin", size=len(content), sha256=hashlib.sha256(content).hexdigest(),
        content=content, uploaded_by=actor))


@dataclass(frozen=True)
class FilePreview:
    label: str
    filename: str  # customer- or operator-controlled: plain text
    file_id: str
    file_type: str
    size: int
    mime: str
    content: bytes | None  # None when we hold no copy (uploaded elsewhere, e.g. the Dashboard)
    preview_png: bytes | None = None  # what to draw: the image itself, or a PDF's first page
    pages: int | None = None  # for a PDF


@dataclass
class SubmittedEvidence:
    submitted: bool
    texts: list[tuple[str, str]] = field(default_factory=list)  # (label, text) as Stripe holds them
    files: list[FilePreview] = field(default_factory=list)
    ce3_prior: list[dict[str, Any]] = field(default_factory=list)
    ce3_disputed: dict[str, Any] | None = None
    ce3_status: str | None = None


def submitted_evidence(uow: UnitOfWork, dispute_id: str) -> SubmittedEvidence:
    """What Stripe holds as this dispute's evidence (from the last state we stored), with previews."""
    with uow:
        dispute = repo.get(uow, dispute_id)
        if dispute is None:
            return SubmittedEvidence(False)
        copies = repo.file_copies(uow, dispute_id)
        raw = dispute.raw or {}
        evidence = raw.get("evidence") or {}
        result = SubmittedEvidence(submitted=bool(dispute.submitted_at or dispute.submission_count))
        order = [f for group in ev.GROUPS.values() for f in group]
        for evidence_field in order:
            value = evidence.get(evidence_field.name)
            if not value:
                continue
            if not evidence_field.is_file:
                result.texts.append((evidence_field.label, str(value)))
                continue
            file_id = value if isinstance(value, str) else str((value or {}).get("id") or "")
            copy = copies.get(file_id)
            kind = copy.file_type if copy else "?"
            content = bytes(copy.content) if copy else None
            preview, pages = (pdf_preview(content) if kind == "pdf" else (content, None)) if content else (None, None)
            result.files.append(FilePreview(evidence_field.label, copy.filename if copy else file_id, file_id, kind,
                                            copy.size if copy else 0, MIME.get(kind, "application/octet-stream"),
                                            content, preview, pages))
        ce3 = (evidence.get("enhanced_evidence") or {}).get(ce.CE3) or {}
        result.ce3_disputed = ce3.get("disputed_transaction") or None
        result.ce3_prior = [p for p in ce3.get("prior_undisputed_transactions") or [] if isinstance(p, dict)]
        state = ((raw.get("evidence_details") or {}).get("enhanced_eligibility") or {}).get(ce.CE3) or {}
        result.ce3_status = state.get("status")
    return result
