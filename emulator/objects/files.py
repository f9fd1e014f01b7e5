"""File uploads (dispute evidence): type by magic bytes, size limit."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from emulator.events.emission import Events
from emulator.state import Json, new_id
from emulator.wire.protocol import StripeApiError

if TYPE_CHECKING:
    pass

FILE_MAX_BYTES = 5 * 1024 * 1024



class FilesMixin(Events):
    # --- files --------------------------------------------------------------------------
    def create_file(self, content: bytes, filename: str, purpose: str) -> Json:
        purposes = {"dispute_evidence", "identity_document", "business_logo", "customer_signature",
                    "additional_verification", "tax_document_user_upload", "business_icon"}
        if purpose not in purposes:
            raise StripeApiError(400, f"Invalid purpose: {purpose}", code="parameter_invalid_string", param="purpose")
        file_type = sniff_file_type(content)
        if purpose == "dispute_evidence":
            if len(content) > FILE_MAX_BYTES:
                raise StripeApiError(400, "File size must be less than 5MB for purpose dispute_evidence.",
                                     code="parameter_invalid_string", param="file")
            if file_type not in ("pdf", "jpg", "png"):
                raise StripeApiError(
                    400, "Invalid file type for purpose dispute_evidence: must be one of pdf, jpg or png.",
                    code="parameter_invalid_string", param="file",
                )
        file = {
            "id": new_id("file"),
            "object": "file",
            "created": int(time.time()),
            "expires_at": None,
            "filename": filename,
            "purpose": purpose,
            "size": len(content),
            "title": None,
            "type": file_type,
            "url": f"https://files.stripe.com/v1/files/{filename}/contents",
            "_content_sha256": hashlib.sha256(content).hexdigest(),
        }
        return self.put("file", file)


def sniff_file_type(content: bytes) -> str:
    """Decide a file's type by its magic bytes, never by its name."""
    if content.startswith(b"%PDF-"):
        return "pdf"
    if content.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return "unknown"
