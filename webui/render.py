"""Pure functions that turn engine results into what the UI shows (HTML, Markdown, table rows)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from rag.indexing import IngestReport
from rag.store.catalog import DocumentInfo
from rag.types import Citation
from webui.i18n import status_text, t

# Markdown's syntax characters: escaped, the model's text renders as the characters it wrote, never as an
# image (which the reader's browser would fetch: a channel for text an injected document made it repeat),
# a link (":" too, against autolinks) or raw HTML. Citations stay "[1]" text; the sources below are our own escaped HTML.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>&:])")


def plain_markdown(text: str) -> str:
    """``text`` as Markdown that shows exactly these characters: no images, links, HTML or formatting."""
    return _MARKDOWN_SYNTAX.sub(lambda m: html.escape(m.group(1)) if m.group(1) in "<>&" else "\\" + m.group(1), text)


SNIPPET_STYLE = "margin:6px 0 2px 0;padding:6px 10px;border-left:3px solid #9ca3af;white-space:normal"


def source_label(source: str, page: int | None, lang: str) -> str:
    return f"{source} · {t(lang, 'page', page=page)}" if page is not None else source


def _html_lines(text: str) -> str:
    """Escape text and keep its line breaks without blank lines, which would end Markdown's HTML block."""
    lines = [html.escape(line) for line in text.strip().splitlines() if line.strip()]
    return "<br>".join(lines)


def chunk_link(kb: str, doc_id: str, chunk_id: int | None) -> str:
    """The UI's own address of a document's detail view, scrolled to ``chunk_id`` (relative to /ui/)."""
    query = {"kb": kb, "doc": doc_id}
    if chunk_id is not None:
        query["chunk"] = str(chunk_id)
    return "?" + urlencode(query)


def sources_html(citations: Sequence[Citation], lang: str, kb: str | None = None) -> str:
    """One collapsible <details> per citation, numbered like the [n] markers in the answer.

    With ``kb``, each source also links to its chunk in the document detail view (a new page of this UI).
    """
    items = []
    for citation in citations:
        label = html.escape(source_label(citation.source, citation.page, lang))
        source_kb = getattr(citation, "kb", None) or kb
        link = (
            f'<a class="rag-open-chunk" href="{html.escape(chunk_link(source_kb, citation.doc_id, citation.chunk_id))}"'
            f' target="_blank" rel="noopener">{html.escape(t(lang, "open_in_document"))}</a>'
            if source_kb
            else ""
        )
        items.append(
            f'<details class="rag-source" data-n="{citation.n}">'
            f"<summary><b>[{citation.n}]</b> {label}</summary>"
            f'<blockquote class="rag-snippet" style="{SNIPPET_STYLE}">{_html_lines(citation.text)}</blockquote>'
            f"{link}</details>"
        )
    return f'<div class="rag-sources"><b>{html.escape(t(lang, "sources"))}</b>' + "".join(items) + "</div>"


def not_covered_html(lang: str) -> str:
    return f'<div class="rag-not-covered">📭 <i>{html.escape(t(lang, "not_covered"))}</i></div>'


def assistant_message(
    text: str, citations: Sequence[Citation], grounded: bool, lang: str, kb: str | None = None
) -> str:
    """The assistant's turn as shown in the chat: the answer, then its sources or the not-covered notice."""
    footer = sources_html(citations, lang, kb) if grounded and citations else not_covered_html(lang)
    return f"{plain_markdown(text.strip())}\n\n{footer}"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def local_time(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else ""


def document_headers(lang: str) -> list[str]:
    keys = ["col_document", "col_status", "col_chunks", "col_format", "col_size", "col_updated", "col_origin",
            "col_tags", "col_error"]
    return [t(lang, key) for key in keys]


def document_rows(documents: Sequence[DocumentInfo], lang: str) -> list[list[Any]]:
    return [
        [
            doc.source,
            status_text(lang, doc.status),
            doc.chunks,
            doc.format,
            human_size(doc.size),
            local_time(doc.updated_at),
            doc.origin,
            ", ".join(doc.tags),
            doc.error or (f"⚠️ {doc.note}" if doc.note else ""),
        ]
        for doc in sorted(documents, key=lambda d: d.source.lower())
    ]


def job_headers(lang: str) -> list[str]:
    keys = ["col_job", "col_kind", "col_status", "col_progress", "col_started", "col_result"]
    return [t(lang, key) for key in keys]


def job_result_text(job: dict[str, Any]) -> str:
    if job.get("error"):
        return str(job["error"])
    result = job.get("result") or {}
    if not result:
        return ""
    parts = [
        f"+{result.get('added', 0)}",
        f"~{result.get('updated', 0)}",
        f"={result.get('unchanged', 0)}",
        f"-{result.get('deleted', 0)}",
    ]
    failed = result.get("failed") or []
    if failed:
        parts.append(f"✗{len(failed)}")
    return " ".join(parts)


def job_rows(jobs: Sequence[dict[str, Any]], lang: str) -> list[list[Any]]:
    rows = []
    for job in jobs:
        progress = job.get("progress") or {}
        done, total = progress.get("done") or 0, progress.get("total") or 0
        rows.append(
            [
                job["job_id"],
                job["kind"],
                status_text(lang, job["status"]),
                f"{done}/{total}" if total else "",
                local_time(job.get("started_at") or job.get("created_at")),
                job_result_text(job),
            ]
        )
    return rows


def ingest_summary(report: IngestReport, file_names: Sequence[str], lang: str) -> str:
    """Markdown: the totals, then one line per uploaded file with its error, or how it was recovered."""
    errors = {item["path"]: item["error"] for item in report.failed}
    notes = {item["path"]: item["note"] for item in report.recovered}
    lines = [
        t(
            lang,
            "upload_summary",
            added=report.added,
            updated=report.updated,
            unchanged=report.unchanged,
            failed=len(report.failed),
            chunks=report.chunks,
            seconds=report.seconds,
        ),
        "",
    ]
    for name in file_names:
        if name in errors:
            lines.append(f"- ❌ `{name}` — {errors[name]}")
        elif name in notes:
            lines.append(f"- ⚠️ `{name}` — {notes[name]}")
        else:
            lines.append(f"- ✅ `{name}`")
    return "\n".join(lines)
