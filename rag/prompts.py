"""Prompt templates (``prompts/{lang}.yaml``, Jinja2 strings) and the language they are picked by.

The templates live in the project's top-level ``prompts/`` folder, found beside the ``rag`` package or,
installed from a wheel, under ``<prefix>/share/rag-assistant/prompts`` (``RAG_PROMPTS_DIR`` overrides it). Every value interpolated into a template passes through
:func:`neutralize`, so retrieved text and user input stay quoted data.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml

from rag.errors import ConfigError

Language = Literal["zh", "en"]
TEMPLATE_NAMES = ("system", "answer", "condense", "no_context", "evidence", "example_question", "example_answer", "fallback")
LANGUAGES: tuple[Language, ...] = ("zh", "en")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
# A Han character carries about 0.6 of an English word (Chinese words average ~1.6 characters).
_HAN_WORD_WEIGHT = 0.6

# What could end a quoted block or forge a turn: our own tags, and chat-template control tokens
# (<|im_start|>, <|eot_id|>, [INST], <start_of_turn>, </s>). Each "<" / "[" becomes its full-width twin.
_DELIMITERS = re.compile(
    r"<(?=\s*/?\s*(?:source|question)\b)|<(?=\|)|(?<=\|)>|<(?=/?s>)|\[(?=/?INST\])|<(?=/?(?:start|end)_of_turn>)",
    re.IGNORECASE,
)
_FULL_WIDTH = {"<": "\uff1c", ">": "\uff1e", "[": "\uff3b"}


def prompts_dir() -> Path:
    """``RAG_PROMPTS_DIR``; else ``prompts/`` beside the package (a checkout, an editable install); else
    the copy a wheel installs under ``<prefix>/share/rag-assistant/prompts``."""
    override = os.environ.get("RAG_PROMPTS_DIR")
    if override:
        return Path(override).expanduser()
    package = Path(__file__).resolve().parent
    beside = package.parent / "prompts"
    # <prefix>/lib/pythonX.Y/site-packages/rag → <prefix>; sys.prefix covers layouts that differ.
    prefixes = [*package.parents[3:4], Path(sys.prefix)]
    installed = [prefix / "share" / "rag-assistant" / "prompts" for prefix in prefixes]
    return next((folder for folder in (beside, *installed) if folder.is_dir()), beside)


def detect_language(text: str) -> Language:
    """"zh" when Han characters make up at least half of the text's words, else "en"."""
    han = len(_HAN.findall(text)) * _HAN_WORD_WEIGHT
    latin = len(_LATIN_WORD.findall(text))
    if han == 0:
        return "en"
    return "zh" if han >= latin else "en"


def neutralize(value: Any) -> str:
    """Render a value as inert text: delimiter look-alikes and control tokens lose their meaning."""
    if value is None:
        return ""
    return _DELIMITERS.sub(lambda m: _FULL_WIDTH[m.group(0)], str(value))


def transcript(history: str | list[Any], max_chars: int = 600) -> str:
    """A conversation as "role: content" lines (a string is taken as already formatted)."""
    if isinstance(history, str):
        return history
    lines = []
    for message in history:
        content = " ".join(str(message["content"]).split())
        if len(content) > max_chars:
            content = content[: max_chars - 1] + "…"
        lines.append(f"{message['role']}: {content}")
    return "\n".join(lines)


class _AttributeSafe:
    """A source as the templates see it, its ``source`` and ``page`` made safe inside ``from="…"``:
    a file name with a quote or a line break cannot close the attribute and write its own."""

    def __init__(self, item: Any) -> None:
        self._item = item

    def __getattr__(self, name: str) -> Any:
        item = self.__dict__["_item"]
        try:
            value = item[name] if isinstance(item, dict) else getattr(item, name)
        except KeyError:
            raise AttributeError(name) from None
        if name in ("source", "page") and value is not None:
            return " ".join(str(value).split()).replace('"', "&quot;")
        return value


def render(name: str, lang: str, **variables: Any) -> str:
    if isinstance(variables.get("sources"), list):
        variables["sources"] = [_AttributeSafe(item) for item in variables["sources"]]
    template = _templates(str(prompts_dir()), _language(lang)).get(name)
    if template is None:
        raise ConfigError(f"unknown prompt template {name!r}; expected one of {', '.join(TEMPLATE_NAMES)}")
    try:
        return template.render(**variables).strip()
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"prompt template {name!r} ({lang}) needs a variable that was not given: {exc}") from exc


def _language(lang: str) -> Language:
    base = lang.lower().split("-")[0].split("_")[0]
    return "zh" if base == "zh" else "en"


@lru_cache(maxsize=8)
def _templates(folder: str, lang: Language) -> dict[str, jinja2.Template]:
    path = Path(folder) / f"{lang}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read prompt file {path}: {exc.strerror} (set RAG_PROMPTS_DIR?)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"prompt file {path} is not valid YAML: {exc}") from exc
    missing = [n for n in TEMPLATE_NAMES if not isinstance((data or {}).get(n), str)]
    if missing:
        raise ConfigError(f"prompt file {path} lacks template(s): {', '.join(missing)}")
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        finalize=neutralize,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters["transcript"] = transcript
    try:
        return {name: env.from_string(data[name]) for name in TEMPLATE_NAMES}
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt file {path}: template syntax error line {exc.lineno}: {exc.message}") from exc
