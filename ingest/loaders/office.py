"""Checks shared by the Office/PDF loaders: encryption and container damage give readable reasons."""

from __future__ import annotations

import io
import zipfile

from ingest.errors import CorruptFile, EncryptedFile
from ingest.loaders.limits import check_zip_container

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def check_ooxml(data: bytes, kind: str) -> None:
    """DOCX/PPTX/XLSX are zip files; a password-protected one is an OLE container instead."""
    if data.startswith(_OLE_MAGIC):
        if _ole_is_encrypted(data):
            raise EncryptedFile(f"{kind} file is password-protected")
        raise CorruptFile(f"not a valid {kind} file (legacy binary Office format under a new extension)")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CorruptFile(f"not a valid {kind} file (its zip container is damaged)")
    check_zip_container(data, kind)


def _ole_is_encrypted(data: bytes) -> bool:
    try:
        import msoffcrypto

        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:
        return True  # an OLE container under an OOXML name is, in practice, an encrypted file
