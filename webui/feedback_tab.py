"""The feedback tab (for administrators: the UI opens only for admin keys): recent ratings of answers,
each with its question, the answer given, the rater's comment and the answer's sources."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr

from rag.service import RagService
from rag.store.conversations import FeedbackRecord
from webui.i18n import Relabeler, t
from webui.render import chunk_link, source_label

RECENT_FEEDBACK = 50


def feedback_html(records: Sequence[FeedbackRecord], lang: str) -> str:
    """Newest first: one card per rated answer."""
    if not records:
        return f'<p class="rag-feedback-empty">{html.escape(t(lang, "no_feedback"))}</p>'
    cards = []
    for record in records:
        thumb = "👍" if record.rating == "up" else "👎"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at))
        sources = []
        for source in record.sources:
            label = html.escape(source_label(str(source.get("source", "")), source.get("page"), lang))
            kb = source.get("kb") or record.kb
            if kb and source.get("doc_id"):
                href = html.escape(chunk_link(kb, str(source["doc_id"]), source.get("chunk_id")))
                label = f'<a class="rag-open-chunk" href="{href}" target="_blank" rel="noopener">{label}</a>'
            sources.append(f"<li>[{html.escape(str(source.get('n', '')))}] {label}</li>")
        comment = (f'<div class="rag-feedback-comment">💬 {html.escape(record.comment)}</div>'
                   if record.comment else "")
        cards.append(
            f'<div class="rag-feedback" data-rating="{record.rating}" data-message-id="{record.message_id}">'
            f'<div class="rag-feedback-head">{thumb} · {html.escape(when)} · {html.escape(record.owner)}'
            f" · {html.escape(record.kb or '')}</div>"
            f'<div class="rag-feedback-question"><b>{html.escape(t(lang, "question"))}:</b> '
            f"{html.escape(record.question)}</div>"
            f'<div class="rag-feedback-answer"><b>{html.escape(t(lang, "answer"))}:</b> '
            f"{html.escape(record.answer)}</div>{comment}"
            f'<div class="rag-feedback-sources"><b>{html.escape(t(lang, "sources"))}:</b>'
            f'<ul>{"".join(sources) or "<li>—</li>"}</ul></div></div>'
        )
    return '<div class="rag-feedback-list">' + "".join(cards) + "</div>"


def rating_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, "rating_all"), "all"), (t(lang, "rating_up"), "up"), (t(lang, "rating_down"), "down")]


@dataclass
class FeedbackViews:
    service: RagService

    def recent(self, rating: str, lang: str) -> str:
        chosen = rating if rating in ("up", "down") else None
        records = self.service.feedback(None, chosen)  # type: ignore[arg-type]
        return feedback_html(list(reversed(records[-RECENT_FEEDBACK:])), lang)


@dataclass
class FeedbackTab:
    rating: gr.Radio
    listing: gr.HTML
    views: FeedbackViews


def build_feedback_tab(service: RagService, lang: gr.Dropdown, text: Relabeler) -> FeedbackTab:
    views = FeedbackViews(service)
    text.bind(gr.Markdown(t("en", "feedback_title")), value="feedback_title")
    with gr.Row(equal_height=True):
        rating = text.bind(
            gr.Radio(choices=rating_choices("en"), value="all", label=t("en", "feedback_rating"),
                     elem_id="feedback-rating", scale=4),
            label="feedback_rating",
        )
        refresh = text.bind(
            gr.Button(t("en", "refresh"), size="sm", scale=1, elem_id="refresh-feedback"), value="refresh"
        )
    listing = gr.HTML(elem_id="feedback-list")
    for trigger in (rating.change, refresh.click):
        trigger(views.recent, inputs=[rating, lang], outputs=listing, queue=False)
    return FeedbackTab(rating, listing, views)
