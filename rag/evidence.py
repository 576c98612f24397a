"""Supporting quotes: the exact source sentences an answer rests on.

Small models paraphrase ("about 8 kg" for the source's "only about 8 kg in weight"), put a wrong
number into an otherwise copied sentence, or copy the sentence next to the right one. So the answer
is followed by source sentences verbatim: for each answer sentence the source sentence it matches
best, then the source sentence that matches the question best. The reader sees the document's own
words beside the model's and can tell when they disagree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[.])\s+|\n+")
CITATION_MARKER = re.compile(r"\[(\d{1,2})\]")  # "[2]" in an answer cites source 2
_NOT_WORD = re.compile(r"[\W_]+")
_QUESTION_WEIGHT = 0.2  # breaks ties between sentences that match a short answer equally well


@dataclass(frozen=True, slots=True)
class Quote:
    n: int  # 1-based number of the source, as cited in the answer
    text: str


def supporting_quotes(
    answer: str,
    sources: Sequence[str],
    question: str = "",
    *,
    min_overlap: float = 0.5,
    limit: int = 2,
) -> list[Quote]:
    """The source sentences each answer sentence draws on, then the one closest to the question.

    A sentence is drawn on when at least ``min_overlap`` of the answer sentence's characters appear in
    it, in order. Sentences the answer already contains in full are not repeated; at most ``limit``.
    """
    candidates = [
        (n, sentence, squash(sentence))
        for n, text in enumerate(sources, 1)
        for sentence in split_sentences(text)
    ]
    if not candidates:
        return []
    answer_text = CITATION_MARKER.sub("", answer)
    answer_squashed = squash(answer_text)
    question_squashed = squash(question)
    quotes: list[Quote] = []
    for piece in split_sentences(answer_text):
        squashed = squash(piece)
        if len(squashed) < 2:
            continue
        _, n, sentence, sentence_squashed = max(
            (_overlap(squashed, s) + _QUESTION_WEIGHT * _overlap(question_squashed, s), n, sentence, s)
            for n, sentence, s in candidates
        )
        quote = Quote(n, sentence)
        if _overlap(squashed, sentence_squashed) < min_overlap or quote in quotes:
            continue
        if sentence_squashed in answer_squashed:
            continue
        quotes.append(quote)
    if question_squashed:
        _, n, sentence, sentence_squashed = max(
            (_overlap(question_squashed, s), n, sentence, s) for n, sentence, s in candidates
        )
        if Quote(n, sentence) not in quotes and sentence_squashed not in answer_squashed:
            quotes.append(Quote(n, sentence))
    return quotes[:limit]


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


def squash(text: str) -> str:
    """Text reduced to its lower-cased letters and digits, for comparing wordings."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


def _overlap(part: str, whole: str) -> float:
    """Share of ``part``'s characters found in ``whole`` in the same order."""
    if not part or not whole:
        return 0.0
    blocks = SequenceMatcher(None, part, whole, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks) / len(part)
