"""Sections → token-bounded chunks that end at sentence boundaries in Chinese and English."""

from __future__ import annotations

from collections.abc import Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.language import detect_language, estimate_tokens
from ingest.models import Chunk, ParsedDocument, Section

# Coarsest first: paragraphs, lines, then sentence ends (zh and en), then clauses, words, characters.
SEPARATORS = [
    "\n\n",
    "\n",
    "。",
    "！",
    "？",
    ". ",
    "! ",
    "? ",
    "；",
    "; ",
    "，",
    ", ",
    "、",
    " ",
    "",
]


class Splitter:
    """``chunk_tokens_zh`` sizes Chinese sections separately: the bundled English embedder truncates
    at 256 word pieces, while Chinese text goes to a multilingual model and reads better in larger pieces."""

    def __init__(self, chunk_tokens: int = 256, overlap_tokens: int = 32, chunk_tokens_zh: int | None = None) -> None:
        self.chunk_tokens = chunk_tokens
        self._limits = {"en": chunk_tokens, "zh": chunk_tokens_zh or chunk_tokens}
        self._splitters = {language: self._make(limit, overlap_tokens) for language, limit in self._limits.items()}

    @staticmethod
    def _make(chunk_tokens: int, overlap_tokens: int) -> RecursiveCharacterTextSplitter:
        if overlap_tokens >= chunk_tokens:
            raise ValueError("overlap_tokens must be smaller than chunk_tokens")
        return RecursiveCharacterTextSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=overlap_tokens,
            length_function=estimate_tokens,
            separators=SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def split_document(self, document: ParsedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in document.sections:
            if section.is_table:
                pieces = self._split_table(section.text)
            else:
                pieces = self._split_text(section.text, detect_language(section.text))
            for piece in pieces:
                chunks.append(
                    Chunk(
                        text=piece,
                        ordinal=len(chunks),
                        page=section.page,
                        heading=section.heading,
                        language=detect_language(piece),
                    )
                )
        return chunks

    def _split_text(self, text: str, language: str = "en") -> list[str]:
        if estimate_tokens(text) <= self._limits[language]:
            return [text.strip()]
        return [piece for piece in self._splitters[language].split_text(text) if piece.strip()]

    def _split_table(self, table: str) -> list[str]:
        """Markdown table rows grouped under a repeated header, so every chunk reads as a table."""
        lines = table.splitlines()
        if len(lines) < 3 or not lines[1].startswith("|"):
            return self._split_text(table)
        header = lines[:2]
        budget = self.chunk_tokens - estimate_tokens("\n".join(header))
        groups: list[list[str]] = [[]]
        used = 0
        for row in lines[2:]:
            cost = estimate_tokens(row)
            if groups[-1] and used + cost > budget:
                groups.append([])
                used = 0
            groups[-1].append(row)
            used += cost
        return ["\n".join(header + rows) for rows in groups if rows]


def split_sections(sections: Iterable[Section], chunk_tokens: int = 256, overlap_tokens: int = 32) -> list[Chunk]:
    document = ParsedDocument(source="", sections=list(sections), format="txt")
    return Splitter(chunk_tokens, overlap_tokens).split_document(document)
