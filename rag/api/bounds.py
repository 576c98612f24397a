"""Request size limits that a byte count cannot express: question and message length in tokens.

Tokens are estimated without loading a model (one per CJK character, ~1.3 per English word) and never
below a quarter of the characters, so a long string without spaces cannot pass as one "word".
The configured limits are ``server.max_question_tokens`` (the question: the last user message, a search
query) and ``server.max_message_tokens`` (every other message of a conversation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ingest.language import estimate_tokens
from rag.config import ServerSettings
from rag.errors import InvalidInput


def tokens_at_least(text: str, limit: int) -> int:
    """An estimate of ``text``'s tokens; above ``limit`` it may stop counting early (it is over anyway)."""
    floor = math.ceil(len(text) / 4)
    if floor > limit:
        return floor
    return max(estimate_tokens(text), floor)


def check_length(text: str, limit: int, what: str) -> None:
    tokens = tokens_at_least(text, limit)
    if tokens > limit:
        raise InvalidInput(f"{what} is too long: about {tokens} tokens, the limit is {limit} tokens")


def check_question(text: str, server: ServerSettings, what: str = "the question") -> None:
    check_length(text, server.max_question_tokens, what)


def check_conversation(contents: Sequence[str], server: ServerSettings) -> None:
    """The last message is the question; the others are history, each under the message limit."""
    for position, content in enumerate(contents[:-1], start=1):
        check_length(content, server.max_message_tokens, f"message {position}")
    if contents:
        check_question(contents[-1], server, f"message {len(contents)} (the question)")
