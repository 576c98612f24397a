"""Outlook .msg mails: body through unstructured (python-oxmsg), subject as heading, attachments read."""

from __future__ import annotations

import io
from pathlib import Path

from ingest.errors import CorruptFile
from ingest.loaders.attachments import attachment_sections
from ingest.loaders.elements import NO_LANGUAGE_DETECTION, elements_to_sections
from ingest.loaders.legacy import OLE_MAGIC
from ingest.models import Section


def load_msg(data: bytes, path: Path) -> list[Section]:
    if not data.startswith(OLE_MAGIC):
        raise CorruptFile("not an Outlook MSG file (no OLE container)")
    from oxmsg import Message
    from unstructured.partition.msg import partition_msg

    message = Message.load(io.BytesIO(data))
    subject = message.subject or path.stem
    sections = elements_to_sections(
        partition_msg(file=io.BytesIO(data), process_attachments=False, languages=NO_LANGUAGE_DETECTION), trust_titles=False
    )
    for section in sections:
        section.heading = section.heading or subject
    header = [f"Subject: {subject}"]
    if message.sender:
        header.append(f"From: {message.sender}")
    attached, names = attachment_sections(
        [(a.file_name, a.file_bytes or b"") for a in message.attachments if a.file_name], subject)
    if names:
        header.append("Attachments: " + ", ".join(names))
    return [Section(text="\n".join(header), heading=subject), *sections, *attached]
