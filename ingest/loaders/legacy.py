"""Legacy binary Office (doc, xls, ppt) and OpenDocument sheets and slides (ods, odp), via LibreOffice.

LibreOffice converts to the OOXML twin, whose loader then keeps headings, slides, sheets and tables.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from ingest.errors import CorruptFile, EncryptedFile
from ingest.loaders import formats
from ingest.loaders.converters import soffice_convert
from ingest.loaders.limits import check_zip_container
from ingest.models import Section

# formats imports this module to register it, so the OOXML loaders are looked up at call time.

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def check_ole(data: bytes, kind: str) -> None:
    """Binary Office files are OLE containers; password-protected ones say so in their streams."""
    if not data.startswith(OLE_MAGIC):
        return  # old Word also wrote RTF/HTML under .doc; LibreOffice reads those too
    import msoffcrypto
    from msoffcrypto.exceptions import FileFormatError

    try:
        encrypted = msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted()
    except FileFormatError:
        return  # a variant msoffcrypto does not know; LibreOffice decides
    except Exception as exc:
        raise CorruptFile(f"damaged {kind} file (its OLE container cannot be read)") from exc
    if encrypted:
        raise EncryptedFile(f"{kind} file is password-protected")


def check_odf(data: bytes, kind: str) -> None:
    check_zip_container(data, kind)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        try:
            manifest = archive.read("META-INF/manifest.xml")
        except KeyError:
            return
    if b"encryption-data" in manifest:
        raise EncryptedFile(f"{kind} file is password-protected")


def load_doc(data: bytes, path: Path) -> list[Section]:
    check_ole(data, "DOC")
    return formats.load_docx(soffice_convert(data, ".doc", "docx"), path)


def load_xls(data: bytes, path: Path) -> list[Section]:
    check_ole(data, "XLS")
    return formats.load_xlsx(soffice_convert(data, ".xls", "xlsx"), path)


def load_ppt(data: bytes, path: Path) -> list[Section]:
    check_ole(data, "PPT")
    return formats.load_pptx(soffice_convert(data, ".ppt", "pptx"), path)


def load_ods(data: bytes, path: Path) -> list[Section]:
    check_odf(data, "ODS")
    return formats.load_xlsx(soffice_convert(data, ".ods", "xlsx"), path)


def load_odp(data: bytes, path: Path) -> list[Section]:
    check_odf(data, "ODP")
    return formats.load_pptx(soffice_convert(data, ".odp", "pptx"), path)
