"""`unstructured` elements → sections with heading path, page and tables kept as markdown."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bs4 import BeautifulSoup

from ingest.models import Section

# unstructured runs langdetect over every document (a third of a Markdown file's parse time); the
# splitter tells Chinese from English itself, so partitioners are called with this to skip it.
NO_LANGUAGE_DETECTION = [""]


def elements_to_sections(
    elements: Iterable[Any], heading_prefix: str | None = None, trust_titles: bool = True
) -> list[Section]:
    """``trust_titles``: the format marks headings (Markdown, HTML, DOCX, PPTX). In plain text and PDF
    text layers unstructured guesses titles from short lines, so there they stay text."""
    sections: list[Section] = []
    headings: list[str] = [heading_prefix] if heading_prefix else []
    base_depth = len(headings)
    for element in elements:
        category = getattr(element, "category", "")
        metadata = element.metadata
        text = (element.text or "").strip()
        page = metadata.page_number
        if category in {"Header", "Footer", "PageBreak", "PageNumber"} or not text:
            continue
        if category == "Title" and trust_titles and len(text) <= 200:
            depth = base_depth + (metadata.category_depth or 0)
            headings = headings[:depth] + [text]
            continue
        heading = " > ".join(headings) or None
        if category == "Table":
            table_text = html_table_to_markdown(metadata.text_as_html) if metadata.text_as_html else text
            sections.append(Section(text=table_text, page=page, heading=heading, is_table=True))
            continue
        _append_text(sections, text, page, heading)
    if not sections and headings:
        # A document that is only headings (a slide deck of titles) still has text worth indexing.
        sections.append(Section(text="\n".join(headings), page=None, heading=None))
    return sections


def _append_text(sections: list[Section], text: str, page: int | None, heading: str | None) -> None:
    last = sections[-1] if sections else None
    if last and not last.is_table and last.page == page and last.heading == heading:
        last.text = f"{last.text}\n\n{text}"
    else:
        sections.append(Section(text=text, page=page, heading=heading))


def html_table_to_markdown(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    rows: list[list[str]] = []
    for tr in soup.find_all("tr"):
        cells = [" ".join(cell.get_text(" ", strip=True).split()).replace("|", "\\|") for cell in tr.find_all(["th", "td"])]
        if any(cells):
            rows.append(cells)
    if not rows:
        return soup.get_text(" ", strip=True)
    return rows_to_markdown(rows)


def rows_to_markdown(rows: list[list[str]]) -> str:
    """A markdown table whose first row is the header (cells already escaped and on one line)."""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)
