"""BM25 tokens for Chinese, English and mixed text.

English: lowercase, stopwords removed, Snowball-stemmed. Chinese: jieba's search-mode cut (words and
their sub-words, so "中华人民共和国" also matches "人民"). Mixed text is split into CJK and non-CJK runs
and each run goes to its own tokenizer.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

import Stemmer

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[0-9a-z]+(?:[.'][0-9a-z]+)*")

ENGLISH_STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves"]
)
CHINESE_STOPWORDS = frozenset(
    ["的", "了", "在", "是", "我", "有", "和", "就", "不", "人", "都", "一", "一个", "上", "也", "很", "到", "说", "要", "去", "你", "会", "着", "没有", "看", "好", "自己", "这", "那", "吗", "呢", "吧", "啊", "与", "及", "或", "其", "之", "为", "以", "于", "而", "被", "把", "对", "从", "由", "等", "该", "并", "但", "向", "所", "个", "中", "什么", "哪些", "哪个", "哪", "怎么", "如何", "多少", "为什么"]
)

_jieba_lock = threading.Lock()


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]
    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _jieba_lock:
        jieba.initialize()
    return jieba


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


class Tokenizer:
    def __init__(self, stem: bool = True, stopwords: bool = True) -> None:
        self.stem = stem
        self.stopwords = stopwords

    def __call__(self, text: str) -> list[str]:
        tokens: list[str] = []
        position = 0
        for match in _CJK_RUN.finditer(text):
            tokens.extend(self._english(text[position : match.start()]))
            tokens.extend(self._chinese(match.group()))
            position = match.end()
        tokens.extend(self._english(text[position:]))
        return tokens

    def _english(self, text: str) -> list[str]:
        if not text or text.isspace():
            return []
        words = _WORD.findall(text.lower())
        if self.stopwords:
            words = [w for w in words if w not in ENGLISH_STOPWORDS]
        return _stemmer().stemWords(words) if self.stem else words

    def _chinese(self, run: str) -> list[str]:
        words = [w for w in _jieba().cut_for_search(run) if w.strip()]
        if self.stopwords:
            words = [w for w in words if w not in CHINESE_STOPWORDS]
        return words


default_tokenizer = Tokenizer()
