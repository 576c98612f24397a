"""Cheap language and token-count estimates used for chunk sizing and routing (no model needed)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def cjk_ratio(text: str) -> float:
    letters = sum(1 for ch in text if not ch.isspace())
    if not letters:
        return 0.0
    return len(_CJK.findall(text)) / letters


def detect_language(text: str) -> str:
    """"zh" when a notable share of the visible characters is CJK, else "en"."""
    return "zh" if cjk_ratio(text) >= 0.2 else "en"


def estimate_tokens(text: str) -> int:
    """Roughly what a subword tokenizer would count: one per CJK character, ~1.3 per English word."""
    cjk = len(_CJK.findall(text))
    words = _WORD.findall(_CJK.sub(" ", text))
    return cjk + int(len(words) * 1.3 + 0.5)
