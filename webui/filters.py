"""The chat's narrowing controls: tags, formats and a source glob (a DocumentFilter), and more KBs to ask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from rag.filters import DocumentFilter
from rag.service import RagService
from webui.i18n import Relabeler, t


@dataclass
class FilterPanel:
    tags: gr.Dropdown
    formats: gr.Dropdown
    source: gr.Textbox
    extra_kbs: gr.Dropdown

    @property
    def choice_outputs(self) -> list[Any]:
        return [self.tags, self.formats, self.extra_kbs]


def document_filter(tags: list[str] | None, formats: list[str] | None, source: str | None) -> DocumentFilter | None:
    """The filter the controls describe; None when they narrow nothing."""
    chosen = DocumentFilter(
        source=(source or "").strip() or None,
        format=tuple(f.strip().lower().lstrip(".") for f in formats or [] if f.strip()),
        tags=tuple(tag.strip() for tag in tags or [] if tag.strip()),
    )
    return None if chosen.empty else chosen


def chat_kbs(service: RagService, kb: str | None, extra: list[str] | None) -> list[str]:
    """The KB selected in the header first, then the others chosen to ask as well (no repeats)."""
    names = [name for name in [kb, *(extra or [])] if name]
    return list(dict.fromkeys(names))


def filter_choices(
    service: RagService, kb: str | None, tags: list[str] | None, formats: list[str] | None,
    extra: list[str] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The tags and formats found in the selected KB's documents, and the other KBs; chosen values kept."""
    names = [info.name for info in service.list_kbs()]
    documents = service.list_documents(kb) if kb and kb in names else []
    tag_choices = sorted({tag for doc in documents for tag in getattr(doc, "tags", ()) or ()})
    format_choices = sorted({doc.format.lower().lstrip(".") for doc in documents if doc.format})
    others = [name for name in names if name != kb]
    return (
        gr.update(choices=tag_choices, value=[tag for tag in tags or [] if tag in tag_choices]),
        gr.update(choices=format_choices, value=[f for f in formats or [] if f in format_choices]),
        gr.update(choices=others, value=[name for name in extra or [] if name in others]),
    )


def build_filter_panel(service: RagService, text: Relabeler, lang: str = "en") -> FilterPanel:
    with text.bind(gr.Accordion(t(lang, "filter_title"), open=True, elem_id="filter-panel"), label="filter_title"):
        tags = text.bind(
            gr.Dropdown(choices=[], value=[], multiselect=True, label=t(lang, "filter_tags"),
                        info=t(lang, "filter_tags_info"), elem_id="filter-tags", allow_custom_value=True),
            label="filter_tags",
            info="filter_tags_info",
        )
        formats = text.bind(
            gr.Dropdown(choices=[], value=[], multiselect=True, label=t(lang, "filter_formats"),
                        elem_id="filter-formats"),
            label="filter_formats",
        )
        source = text.bind(
            gr.Textbox(label=t(lang, "filter_source"), placeholder="policies/2025/*", max_lines=1,
                       elem_id="filter-source"),
            label="filter_source",
        )
        extra_kbs = text.bind(
            gr.Dropdown(choices=[], value=[], multiselect=True, label=t(lang, "extra_kbs"),
                        info=t(lang, "extra_kbs_info"), elem_id="extra-kbs"),
            label="extra_kbs",
            info="extra_kbs_info",
        )
    return FilterPanel(tags, formats, source, extra_kbs)
