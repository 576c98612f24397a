"""Office files built in memory for tests (python-docx), shared by the test modules that need one."""

from __future__ import annotations

import io


def docx_bytes(paragraphs: list[str], heading: str = "Audit archive", table: list[list[str]] | None = None) -> bytes:
    """A .docx with a level-1 heading, the paragraphs, then an optional table (first row: header)."""
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
