"""rag/filters.py on its own: what a filter matches, how bad values are named, how KBs' rankings fuse."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rag.errors import InvalidInput
from rag.filters import DocumentFilter, check_kbs, fuse_kbs
from rag.types import Hit


@dataclass(frozen=True)
class Doc:
    doc_id: str
    source: str
    format: str = "md"
    tags: tuple[str, ...] = ()
    updated_at: float = 1_000.0
    status: str = "indexed"


DOCS = [
    Doc("a", "policies/2025/travel.pdf", "pdf", ("policy", "2025"), 2_000.0),
    Doc("b", "policies/leave.docx", "docx", ("policy",), 1_500.0),
    Doc("c", "notes/Travel.md", "md", (), 1_000.0),
    Doc("d", "policies/broken.pdf", "pdf", ("policy",), 2_500.0, status="failed"),
]


def ids(where: dict[str, object]) -> set[str]:
    found = DocumentFilter.from_json(where)
    assert found is not None
    return set(found.doc_ids(DOCS))


def test_each_field_and_their_combination() -> None:
    assert ids({"source": "policies/*"}) == {"a", "b"}  # "*" crosses folders; failed documents never match
    assert ids({"source": "*travel*"}) == {"a"}  # case-sensitive, as fnmatchcase
    assert ids({"format": ".PDF"}) == {"a"}
    assert ids({"format": ["docx", "md"]}) == {"b", "c"}
    assert ids({"tags": ["policy"]}) == {"a", "b"}
    assert ids({"tags": ["policy", "2025"]}) == {"a"}  # every tag listed
    assert ids({"modified_after": 1_500.0}) == {"a", "b"}  # inclusive
    assert ids({"modified_before": 1_500.0}) == {"c"}  # exclusive
    assert ids({"modified_after": "1970-01-01T00:25:00Z"}) == {"a", "b"}  # ISO 8601 = 1,500 s
    assert ids({"source": "policies/*", "format": "pdf", "tags": ["2025"], "modified_before": 3_000}) == {"a"}


def test_an_empty_filter_is_no_filter() -> None:
    assert DocumentFilter.from_json(None) is None
    assert DocumentFilter.from_json({}) is None
    assert DocumentFilter.from_json({"tags": [], "format": None}) is None


@pytest.mark.parametrize(("where", "field"), [
    ({"colour": "red"}, "filter.colour"),
    ({"source": "  "}, "filter.source"),
    ({"format": [""]}, "filter.format"),
    ({"format": [3]}, "filter.format"),
    ({"tags": ["ok", " "]}, "filter.tags"),
    ({"modified_after": "last week"}, "filter.modified_after"),
    ({"modified_before": True}, "filter.modified_before"),
    ({"modified_after": "2025-02-01", "modified_before": "2025-01-01"}, "filter.modified_after"),
])
def test_bad_values_name_their_field(where: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput, match=field.replace(".", r"\.")):
        DocumentFilter.from_json(where)


def test_round_trip_through_json() -> None:
    where = {"source": "a/*", "format": ["pdf"], "tags": ["x"], "modified_after": 1.0, "modified_before": 2.0}
    found = DocumentFilter.from_json(where)
    assert found is not None and found.to_json() == where


def hit(chunk_id: int, score: float) -> Hit:
    return Hit(chunk_id=chunk_id, doc_id=f"d{chunk_id}", source=f"s{chunk_id}", page=None, text="t", score=score)


def test_kbs_fuse_by_rank_and_keep_their_own_scores() -> None:
    fused = fuse_kbs({"a": [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)], "b": [hit(1, 0.2), hit(9, 0.1)]}, top_k=4)
    assert [(h.kb, h.chunk_id) for h in fused] == [("a", 1), ("b", 1), ("a", 2), ("b", 9)]
    assert [h.score for h in fused] == [0.9, 0.2, 0.8, 0.1]  # each KB's own score, for the relevance gate
    assert [h.explain["kbs"]["rank"] for h in fused] == [1, 2, 3, 4]
    assert fused[0].to_json()["kb"] == "a" and "kb" not in hit(1, 0.5).to_json()


def test_kb_lists_are_checked() -> None:
    assert check_kbs(["a", "b", "a"]) == ["a", "b"]
    with pytest.raises(InvalidInput):
        check_kbs([])
    with pytest.raises(InvalidInput):
        check_kbs([f"kb{i}" for i in range(17)])
