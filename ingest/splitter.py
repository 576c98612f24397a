"""Sections → token-bounded chunks that end at sentence boundaries in Chinese and English."""

from __future__ import annotations

import re
from collections.abc import Iterable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.errors import TooLarge
from ingest.language import detect_language, estimate_tokens
from ingest.models import Chunk, ParsedDocument, Section

# A chunk holds at most this many characters per token of its budget: English runs ~5 characters a
# token, so only a run no tokenizer splits (a base64 blob, a 10 MB line of one "word") meets the cap.
MAX_CHARS_PER_TOKEN = 16
# Runs of this many characters with none of the separators above (no white space, no CJK sentence or
# clause mark) are cut by length before the recursive splitter sees them: it would otherwise split such a
# run into single characters (10 M list items for a 10 MB blob).
LONG_RUN_CHARS = 1024
_LONG_RUN = re.compile(r"[^\s。！？；，、]{" + str(LONG_RUN_CHARS) + ",}")
DEFAULT_MAX_CHUNKS = 20_000

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

    def __init__(
        self,
        chunk_tokens: int = 256,
        overlap_tokens: int = 32,
        chunk_tokens_zh: int | None = None,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
    ) -> None:
        """``max_chunks``: a document that would give more chunks fails with TooLarge (checked on an
        estimate before splitting, and on the count after)."""
        self.chunk_tokens = chunk_tokens
        self.max_chunks = max_chunks
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
        self._check_estimate(document.sections)
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
            if len(chunks) > self.max_chunks:
                raise self._too_many(f"more than {self.max_chunks:,}")
        return chunks

    def _check_estimate(self, sections: list[Section]) -> None:
        """Fail before splitting when the token count alone says the chunks would be too many
        (a chunk holds at most its token budget, so tokens / budget is a lower bound)."""
        budget = max(self._limits.values())
        tokens = 0
        for section in sections:
            tokens += estimate_tokens(section.text)
            if tokens // budget > self.max_chunks:
                raise self._too_many(f"at least {tokens // budget:,}")

    def _too_many(self, count: str) -> TooLarge:
        return TooLarge(f"document would give {count} chunks, over the {self.max_chunks:,}-chunk limit per document "
                        "(ingest.max_chunks_per_document)")

    def _split_text(self, text: str, language: str = "en") -> list[str]:
        limit = self._limits[language]
        max_chars = limit * MAX_CHARS_PER_TOKEN
        if len(text) <= max_chars and estimate_tokens(text) <= limit:
            return [text.strip()]
        if not _LONG_RUN.search(text):
            return [piece for piece in self._splitters[language].split_text(text) if piece.strip()]
        pieces: list[str] = []
        start = 0
        for run in _LONG_RUN.finditer(text):  # prose between the runs is split as usual, each run by length
            pieces.extend(self._splitters[language].split_text(text[start: run.start()]))
            pieces.extend(_cut_run(run.group(), limit, max_chars))
            start = run.end()
        pieces.extend(self._splitters[language].split_text(text[start:]))
        return [piece for piece in pieces if piece.strip()]

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


def _cut_run(run: str, token_limit: int, max_chars: int) -> list[str]:
    """A run with no white space in pieces of at most ``max_chars`` characters and about ``token_limit`` tokens."""
    tokens = max(estimate_tokens(run), 1)
    step = max(1, min(max_chars, len(run) * token_limit // tokens))
    return [run[i: i + step] for i in range(0, len(run), step)]


def split_sections(sections: Iterable[Section], chunk_tokens: int = 256, overlap_tokens: int = 32) -> list[Chunk]:
    document = ParsedDocument(source="", sections=list(sections), format="txt")
    return Splitter(chunk_tokens, overlap_tokens).split_document(document)
