"""The files attached to a mail (.eml, .msg): each read by its own format's loader, under the mail's heading.

A mail's attachments are often where its knowledge is (the contract, the price list). Each attachment
gets what is left of the mail's time budget; one that cannot be read is named with the reason, and
the mail is indexed regardless. Mails attached to mails are named, not opened (no recursion).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ingest.errors import FileRejected
from ingest.loaders.limits import TimedOut, active_limits, seconds_left
from ingest.models import Section

MAX_ATTACHMENTS = 20
_NOT_OPENED = {".eml", ".msg"}


def attachment_sections(attachments: list[tuple[str, bytes]], heading: str) -> tuple[list[Section], list[str]]:
    """Sections of the readable attachments (heading "mail > file"), and one line per attachment for
    the mail's header: its name, with the reason when it was not read."""
    from ingest.loaders import is_supported, load_document  # the registry imports this module's users

    sections: list[Section] = []
    lines: list[str] = []
    for index, (name, data) in enumerate(attachments):
        path = Path(Path(name).name or f"attachment-{index + 1}")
        reason = None
        if index >= MAX_ATTACHMENTS:
            reason = f"not read: over {MAX_ATTACHMENTS} attachments"
        elif path.suffix.lower() in _NOT_OPENED:
            pass  # named only
        elif not is_supported(path):
            reason = "not read: unsupported type"
        else:
            try:
                limits = replace(active_limits(), timeout_s=max(1.0, seconds_left()))
                document = load_document(path, path.name, data, limits)
            except TimedOut:
                raise  # the mail's own budget is spent
            except FileRejected as exc:
                reason = f"not read: {exc.reason}"
            else:
                for section in document.sections:
                    inner = f" > {section.heading}" if section.heading and section.heading != path.name else ""
                    section.heading = f"{heading} > {path.name}{inner}"
                    sections.append(section)
        lines.append(f"{path.name} ({reason})" if reason else path.name)
    return sections, lines
