"""Narrowing a search to some documents: a filter on the catalog's document records, and RRF across KBs.

A filter is resolved against the catalog to the set of matching ``doc_id``s, which the index search then
takes as its restriction (``SearchOptions.doc_ids``, applied inside the BM25 and vector searches; see
rag/store/backend.py). So a filter that matches 1% of a KB still returns a full top-k of those documents,
rather than the few of them that happened to be in an unfiltered top-k.

Every condition given must hold (AND); within ``format`` any listed format matches, and a document must
carry every listed tag.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from rag.errors import InvalidInput
from rag.types import Hit

FILTER_FIELDS = ("source", "format", "tags", "modified_after", "modified_before")
MAX_KBS = 16  # KBs one search or chat may fuse


class FilterableDocument(Protocol):
    """What a filter reads of a document record (rag.store.catalog.DocumentInfo)."""

    doc_id: str
    source: str
    status: str
    format: str
    updated_at: float

    @property
    def tags(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class DocumentFilter:
    """Conditions on document records; ``None`` or empty: no condition on that field.

    - ``source``: a glob on the document's source path (``*`` also crosses ``/``: ``policies/*`` matches
      ``policies/2025/leave.pdf``), case-sensitive, as ``fnmatch.fnmatchcase``.
    - ``format``: the document's format (``pdf``, ``docx``, ``md``...), case-insensitive, a leading dot ignored.
    - ``tags``: the document carries every one of them.
    - ``modified_after`` / ``modified_before``: epoch seconds, compared with the time the document's current
      version was indexed (``updated_at``: a changed file is re-indexed, so this is when its content last
      changed as far as the KB knows); after is inclusive, before exclusive.
    """

    source: str | None = None
    format: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    modified_after: float | None = None
    modified_before: float | None = None

    @property
    def empty(self) -> bool:
        return (self.source is None and not self.format and not self.tags
                and self.modified_after is None and self.modified_before is None)

    def matches(self, document: FilterableDocument) -> bool:
        if document.status != "indexed":
            return False
        if self.source is not None and not fnmatch.fnmatchcase(document.source, self.source):
            return False
        if self.format and _format_name(document.format) not in self.format:
            return False
        if self.tags and not set(self.tags) <= set(document.tags):
            return False
        if self.modified_after is not None and document.updated_at < self.modified_after:
            return False
        return self.modified_before is None or document.updated_at < self.modified_before

    def doc_ids(self, documents: Iterable[FilterableDocument]) -> frozenset[str]:
        """The documents of ``documents`` this filter lets through."""
        return frozenset(document.doc_id for document in documents if self.matches(document))

    @classmethod
    def create(cls, source: str | None = None, format: str | Sequence[str] | None = None,
               tags: str | Sequence[str] | None = None, modified_after: float | str | datetime | None = None,
               modified_before: float | str | datetime | None = None) -> DocumentFilter:
        """A checked filter; a bad value raises InvalidInput naming its field (``filter.FIELD``)."""
        if source is not None and (not isinstance(source, str) or not source.strip()):
            raise InvalidInput("filter.source: give a non-empty glob such as 'policies/*.pdf'")
        formats = tuple(dict.fromkeys(_format_name(f) for f in _strings("format", format)))
        if any(not f for f in formats):
            raise InvalidInput("filter.format: formats must not be empty")
        labels = tuple(dict.fromkeys(t.strip() for t in _strings("tags", tags)))
        if any(not t for t in labels):
            raise InvalidInput("filter.tags: tags must not be empty")
        after = _timestamp("modified_after", modified_after)
        before = _timestamp("modified_before", modified_before)
        if after is not None and before is not None and after >= before:
            raise InvalidInput("filter.modified_after must be earlier than filter.modified_before")
        return cls(source, formats, labels, after, before)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DocumentFilter | None:
        """From a JSON object (the REST ``filter`` field, a CLI option); unknown fields are refused."""
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise InvalidInput(f"filter: give an object with some of {', '.join(FILTER_FIELDS)}")
        unknown = sorted(set(data) - set(FILTER_FIELDS))
        if unknown:
            raise InvalidInput(f"filter.{unknown[0]}: unknown filter field (known: {', '.join(FILTER_FIELDS)})")
        found = cls.create(**{name: data.get(name) for name in FILTER_FIELDS})
        return None if found.empty else found

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.source is not None:
            data["source"] = self.source
        if self.format:
            data["format"] = list(self.format)
        if self.tags:
            data["tags"] = list(self.tags)
        if self.modified_after is not None:
            data["modified_after"] = self.modified_after
        if self.modified_before is not None:
            data["modified_before"] = self.modified_before
        return data


def _format_name(value: str) -> str:
    return value.strip().lower().lstrip(".")


def _strings(field: str, value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"filter.{field}: give a string or a list of strings")
    return list(value)


def _timestamp(field: str, value: float | str | datetime | None) -> float | None:
    """Epoch seconds from a number, an ISO 8601 date/time (UTC unless it says otherwise) or a datetime."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"filter.{field}: give an ISO 8601 date such as '2025-01-31' or epoch seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(f"filter.{field}: {value!r} is not an ISO 8601 date such as '2025-01-31' "
                               "or '2025-01-31T12:00:00+08:00'") from None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    raise InvalidInput(f"filter.{field}: give an ISO 8601 date such as '2025-01-31' or epoch seconds")


def check_kbs(kbs: Sequence[str]) -> list[str]:
    """The KBs of a several-KB search, each once, in the given order."""
    unique = list(dict.fromkeys(kbs))
    if not unique:
        raise InvalidInput("kbs: give at least one knowledge base")
    if len(unique) > MAX_KBS:
        raise InvalidInput(f"kbs: at most {MAX_KBS} knowledge bases at once")
    return unique


def fuse_kbs(results: Mapping[str, list[Hit]], top_k: int, k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion of each KB's own ranking into one, each hit tagged with its KB.

    Scores of different KBs are not comparable (BM25 statistics and the fusion are per KB); ranks are.
    The order is by RRF (ties: the KB's order in the request, then its rank there); each hit keeps its
    score within its own KB, which is what the relevance threshold and the gate judge, and gets
    ``explain["kbs"]`` with its fused rank and RRF score.
    """
    fused: list[tuple[float, int, int, Hit]] = []
    for position, hits in enumerate(results.values()):
        for rank, hit in enumerate(hits, 1):
            fused.append((1.0 / (k + rank), position, rank, hit))
    fused.sort(key=lambda item: (-item[0], item[1], item[2]))
    kbs = list(results)
    return [replace(hit, kb=kbs[position],
                    explain={**hit.explain, "kbs": {"rank": n, "score": round(score, 6)}})
            for n, (score, position, _, hit) in enumerate(fused[:top_k], 1)]
