"""Sync planning: which files to add, update or leave alone, and which documents to delete.

A named strategy decides, as LlamaIndex's docstore strategies do (``upserts``, ``upserts_and_delete``):
content hashes decide the work, not timestamps, and the plan is scoped to one **origin** — where the
documents came from (``upload``, ``sync:FOLDER``, ``schedule:NAME``). A plan never touches a document of
another origin: a file whose source name belongs to a document of another origin is refused (the later
arrival is refused with a message naming the owner; docs/sync.md, "Origins").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from ingest.discovery import SourceFile

Action = Literal["add", "update", "unchanged"]

UPLOAD = "upload"


class SyncStrategy(Enum):
    """``upserts``: add new files and re-index changed ones (an ingest, an upload).
    ``mirror``: the same, and delete the origin's documents whose files are not in the batch (a sync)."""

    UPSERTS = "upserts"
    MIRROR = "mirror"


@dataclass(frozen=True, slots=True)
class KnownDocument:
    """What planning needs of a document already in the KB."""

    doc_id: str
    source: str
    origin: str
    content_hash: str | None
    indexed: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    file: SourceFile
    reason: str


@dataclass(slots=True)
class SyncPlan:
    """The work of one ingest or sync of ``origin``: the files to read, the refusals, the deletions."""

    origin: str
    strategy: SyncStrategy
    files: list[SourceFile] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # doc ids of this origin whose files are gone
    previous: dict[str, KnownDocument] = field(default_factory=dict)  # doc id → its indexed version, this origin

    def action(self, file: SourceFile, digest: str) -> Action:
        """What a file whose bytes hash to ``digest`` needs: the hash against the indexed version decides."""
        known = self.previous.get(file.doc_id)
        if known is None or not known.indexed:
            return "add"
        return "unchanged" if known.content_hash == digest else "update"

    def is_new(self, file: SourceFile) -> bool:
        known = self.previous.get(file.doc_id)
        return known is None or not known.indexed


def plan(origin: str, strategy: SyncStrategy, files: Iterable[SourceFile],
         known: Iterable[KnownDocument]) -> SyncPlan:
    """Scope ``files`` to ``origin``: the documents of other origins are neither updated nor deleted."""
    result = SyncPlan(origin, strategy)
    by_id = {doc.doc_id: doc for doc in known}
    wanted: set[str] = set()
    for file in files:
        owner = by_id.get(file.doc_id)
        if owner is not None and owner.origin != origin:
            result.refused.append(Refusal(file, conflict_message(file.source, owner.origin)))
            continue
        wanted.add(file.doc_id)
        result.files.append(file)
        if owner is not None:
            result.previous[file.doc_id] = owner
    if strategy is SyncStrategy.MIRROR:
        result.delete = sorted(doc.doc_id for doc in by_id.values() if doc.origin == origin and doc.doc_id not in wanted)
    return result


def conflict_message(source: str, owner: str) -> str:
    return (f"refused: '{source}' is already a document of origin '{owner}' in this knowledge base; "
            "rename the file or delete that document first")
