"""The document detail tab: a document's metadata, origin and tags, and its chunks in order with pages.

A citation's "open in document" link points here (``?kb=K&doc=ID&chunk=N``): the page opens on this tab with
that chunk highlighted and scrolled into view.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rag.errors import RagError
from rag.service import RagService
from rag.store.catalog import ChunkRow, DocumentInfo
from webui.i18n import Relabeler, status_text, t
from webui.render import human_size, local_time

log = logging.getLogger(__name__)

MAX_CHUNKS_SHOWN = 400  # a long document's first chunks, and always the highlighted one

SCROLL_JS = """() => {
  const el = document.querySelector('#doc-chunks .rag-chunk-highlight');
  if (el) { el.scrollIntoView({block: 'center'}); }
}"""


def metadata_markdown(doc: DocumentInfo, lang: str) -> str:
    tags = ", ".join(f"`{tag}`" for tag in getattr(doc, "tags", ()) or ()) or "—"
    rows = [
        (t(lang, "col_document"), f"`{doc.source}`"),
        (t(lang, "doc_title"), doc.title or "—"),
        (t(lang, "col_status"), status_text(lang, doc.status) + (f" — {doc.error}" if doc.error else "")),
        (t(lang, "col_format"), doc.format),
        (t(lang, "col_size"), human_size(doc.size)),
        (t(lang, "col_chunks"), str(doc.chunks)),
        (t(lang, "col_updated"), local_time(doc.updated_at)),
        (t(lang, "doc_origin"), f"`{getattr(doc, 'origin', None) or '—'}`"),
        (t(lang, "doc_tags"), tags),
        ("doc_id", f"`{doc.doc_id}`"),
    ]
    if doc.note:
        rows.append((t(lang, "col_error"), f"⚠️ {doc.note}"))
    lines = ["| | |", "|---|---|"] + [f"| **{name}** | {value.replace('|', '&#124;')} |" for name, value in rows]
    return "\n".join(lines)


def chunks_html(chunks: Sequence[ChunkRow], highlight: int | None, lang: str) -> str:
    """The chunks in order, each with its number, page and heading; ``highlight`` marked and always shown."""
    shown = list(chunks[:MAX_CHUNKS_SHOWN])
    if highlight is not None and all(c.id != highlight for c in shown):
        shown += [c for c in chunks if c.id == highlight]
    items = []
    for chunk in shown:
        marked = chunk.id == highlight
        head = [f"#{chunk.ordinal + 1}"]
        if chunk.page is not None:
            head.append(t(lang, "page", page=chunk.page))
        if chunk.heading:
            head.append(html.escape(chunk.heading))
        items.append(
            f'<div class="rag-chunk{" rag-chunk-highlight" if marked else ""}" id="rag-chunk-{chunk.id}"'
            f' data-chunk-id="{chunk.id}" data-order="{chunk.ordinal}">'
            f'<div class="rag-chunk-head">{" · ".join(head)}</div>'
            f'<div class="rag-chunk-text">{html.escape(chunk.text)}</div></div>'
        )
    more = len(chunks) - len(shown)
    footer = f'<p class="rag-chunks-more">{html.escape(t(lang, "more_chunks", n=more))}</p>' if more > 0 else ""
    return f'<div class="rag-chunks">{"".join(items)}{footer}</div>'


@dataclass
class DocumentDetail:
    service: RagService

    def choices(self, kb: str | None, selected: str | None) -> dict[str, Any]:
        names = [info.name for info in self.service.list_kbs()]
        docs = self.service.list_documents(kb) if kb and kb in names else []
        choices = [(doc.source, doc.doc_id) for doc in sorted(docs, key=lambda d: d.source.lower())]
        return gr.update(choices=choices, value=selected if any(d.doc_id == selected for d in docs) else None)

    def show(self, kb: str | None, doc_id: str | None, highlight: str | None, lang: str) -> tuple[str, str, str]:
        """(metadata, tags as text, chunks HTML); a missing document reads as a short notice."""
        if not kb or not doc_id:
            return t(lang, "choose_document"), "", ""
        try:
            doc = self.service.get_document(kb, doc_id)
            chunks = self.service.document_chunks(kb, doc_id)
        except RagError as exc:
            return f"⚠️ **{t(lang, 'error')}:** {exc.message}", "", ""
        chunk_id = int(highlight) if highlight and highlight.isdigit() else None
        tags = ", ".join(getattr(doc, "tags", ()) or ())
        return metadata_markdown(doc, lang), tags, chunks_html(chunks, chunk_id, lang)

    def save_tags(self, kb: str | None, doc_id: str | None, tags: str, lang: str) -> str:
        if not kb or not doc_id:
            return f"⚠️ {t(lang, 'choose_document')}"
        names = [tag.strip() for tag in (tags or "").split(",") if tag.strip()]
        try:
            self.service.set_tags(kb, doc_id, names)
        except RagError as exc:
            return f"⚠️ **{t(lang, 'error')}:** {exc.message}"
        return "✅ " + t(lang, "tags_saved")


@dataclass
class DocumentTab:
    document: gr.Dropdown
    highlight: gr.Textbox
    metadata: gr.Markdown
    tags: gr.Textbox
    chunks: gr.HTML
    views: DocumentDetail

    @property
    def show_outputs(self) -> list[Any]:
        return [self.metadata, self.tags, self.chunks]


def build_document_tab(service: RagService, kb: gr.Dropdown, lang: gr.Dropdown, text: Relabeler) -> DocumentTab:
    views = DocumentDetail(service)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            document = text.bind(
                gr.Dropdown(label=t("en", "document"), choices=[], value=None, elem_id="doc-detail-choice"),
                label="document",
            )
            metadata = gr.Markdown(t("en", "choose_document"), elem_id="doc-meta")
            tags = text.bind(
                gr.Textbox(label=t("en", "doc_tags_edit"), placeholder="policy, 2025", max_lines=1,
                           elem_id="doc-tags"),
                label="doc_tags_edit",
            )
            save = text.bind(gr.Button(t("en", "save_tags"), size="sm", elem_id="save-tags"), value="save_tags")
            tags_result = gr.Markdown(elem_id="tags-result")
            highlight = gr.Textbox(visible=False, elem_id="doc-highlight")
        with gr.Column(scale=5):
            text.bind(gr.Markdown(t("en", "chunks_title")), value="chunks_title")
            chunks = gr.HTML(elem_id="doc-chunks")
    tab = DocumentTab(document, highlight, metadata, tags, chunks, views)

    document.input(lambda: "", outputs=highlight, queue=False).then(
        views.show, inputs=[kb, document, highlight, lang], outputs=tab.show_outputs, queue=False
    )
    kb.change(views.choices, inputs=[kb, document], outputs=document, queue=False)
    save.click(views.save_tags, inputs=[kb, document, tags, lang], outputs=tags_result, queue=False).then(
        views.show, inputs=[kb, document, highlight, lang], outputs=tab.show_outputs, queue=False
    )
    return tab
