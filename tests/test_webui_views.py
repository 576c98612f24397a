"""The web UI's pure pieces (no browser): filters from the controls, chunk and feedback rendering, links."""

from __future__ import annotations

from urllib.parse import parse_qs

from rag.filters import DocumentFilter
from rag.store.catalog import ChunkRow
from rag.store.conversations import FeedbackRecord
from rag.types import Citation
from webui.document_view import chunks_html
from webui.feedback_tab import feedback_html
from webui.filters import document_filter
from webui.render import assistant_message, chunk_link


def test_the_filter_controls_become_a_document_filter_or_none() -> None:
    assert document_filter([], [], "  ") is None
    assert document_filter(None, None, None) is None
    assert document_filter(["2025", " policy "], [".PDF"], " policies/* ") == DocumentFilter(
        source="policies/*", format=("pdf",), tags=("2025", "policy"))


def test_a_citation_links_to_its_chunk_in_its_document() -> None:
    query = parse_qs(chunk_link("travel", "d1", 7).lstrip("?"))
    assert query == {"kb": ["travel"], "doc": ["d1"], "chunk": ["7"]}
    html = assistant_message("Answer [1]", [Citation(1, "d1", "a&b.md", 2, "text", 7)], True, "en", "travel")
    assert 'href="?kb=travel&amp;doc=d1&amp;chunk=7"' in html and "a&amp;b.md" in html
    # a citation from another KB (several asked) links to its own KB
    other = Citation(1, "d2", "x.md", None, "text", 3, kb="handbook")
    assert "kb=handbook" in assistant_message("A [1]", [other], True, "en", "travel")


def test_chunks_are_listed_in_order_with_the_cited_one_highlighted_and_escaped() -> None:
    chunks = [ChunkRow(10 + i, "d1", i, f"text {i} <b>", "Intro" if i == 0 else None, i + 1, "en", "a.pdf")
              for i in range(3)]
    html = chunks_html(chunks, 11, "en")
    assert html.count('class="rag-chunk"') == 2 and html.count("rag-chunk rag-chunk-highlight") == 1
    assert 'id="rag-chunk-11" data-chunk-id="11" data-order="1"' in html
    assert html.index("text 0") < html.index("text 1") < html.index("text 2")
    assert "text 0 &lt;b&gt;" in html and "text 0 <b>" not in html
    assert "p. 2" in html and "Intro" in html


def test_feedback_cards_show_the_rating_question_answer_comment_and_sources() -> None:
    record = FeedbackRecord(5, "c1", "alice", "travel", "down", "wrong <price>", None, "How much?", "260 yuan",
                            [{"n": 1, "doc_id": "d1", "source": "chengdu.md", "page": None, "chunk_id": 4}],
                            {}, 0.0)
    html = feedback_html([record], "en")
    assert 'data-rating="down"' in html and 'data-message-id="5"' in html
    assert "wrong &lt;price&gt;" in html and "How much?" in html and "260 yuan" in html
    assert "chengdu.md" in html and "chunk=4" in html
    assert "No feedback yet" in feedback_html([], "en")


def test_a_ui_upload_is_stored_as_an_upload_with_its_tags_and_gradios_copy_removed(service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rag.jobs import JobRunner
    from webui.documents_tab import DocumentViews

    gradio_copy = tmp_path / "gradio" / "0f3a" / "leave.txt"  # as Gradio keeps an uploaded file
    gradio_copy.parent.mkdir(parents=True)
    gradio_copy.write_text("Every employee receives 25 days of paid vacation per year.", encoding="utf-8")
    service.create_kb("hr")
    views = DocumentViews(service, JobRunner(service.catalog))
    summary = views.upload("hr", [str(gradio_copy)], "en", lambda *a, **k: None, "alice", "policy, 2025")
    assert "✅ `leave.txt`" in summary
    [doc] = service.list_documents("hr")
    assert (doc.source, doc.origin, doc.uploaded_by, doc.tags) == ("leave.txt", "upload", "alice", ("policy", "2025"))
    assert service.document_original("hr", doc.doc_id).read_text(encoding="utf-8").startswith("Every employee")
    assert not gradio_copy.exists() and not gradio_copy.parent.exists()
