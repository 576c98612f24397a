"""The chat tab: stored conversations in a sidebar, a streaming chat, thumbs and comments on every answer.

Every turn goes through the service's conversation methods (``RagService.stream_in_conversation``),
so the history lives in the catalog: the open conversation's id is kept in the page's address
(``?conversation=ID``) and comes back after a reload.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rag.errors import RagError
from rag.service import RagService
from webui.conversations import (
    Turn,
    chatbot_update,
    owner_of,
    sidebar_choices,
    stored_turns,
)
from webui.filters import FilterPanel, build_filter_panel, chat_kbs, document_filter, filter_choices
from webui.i18n import Relabeler, t
from webui.render import assistant_message, plain_markdown
from webui.settings_panel import SettingsDefaults, build_settings_panel, chat_options

log = logging.getLogger(__name__)

# Runs in the page: keeps the open conversation's id in the address bar, so a reload reopens it.
SET_URL_JS = """(id) => {
  const url = new URL(window.location.href);
  if (id) { url.searchParams.set('conversation', id); } else { url.searchParams.delete('conversation'); }
  url.searchParams.delete('doc'); url.searchParams.delete('chunk');
  window.history.replaceState(null, '', url);
  return id;
}"""


def add_question(question: str, turns: list[Turn] | None) -> tuple[str, list[Turn], list[dict[str, str]]]:
    turns = list(turns or [])
    question = (question or "").strip()
    if question:
        turns.append({"role": "user", "content": question, "display": plain_markdown(question), "message_id": ""})
    return "", turns, [{"role": turn["role"], "content": turn["display"]} for turn in turns]


def error_text(lang: str, exc: Exception) -> str:
    message = exc.message if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
    return f"⚠️ **{t(lang, 'error')}:** {plain_markdown(message)}"


def stream_reply(
    service: RagService,
    kbs: list[str],
    conversation_id: str,
    turns: list[Turn],
    lang: str,
    owner: str,
    options: Any,
) -> Iterator[tuple[dict[str, Any], list[Turn], str]]:
    """Answer the last question in the conversation (created first if none is open), yielding
    (chat window, turns, conversation id) after every released piece of the answer."""
    turns = list(turns or [])
    if not turns or turns[-1]["role"] != "user":
        yield chatbot_update(service, turns), turns, conversation_id
        return
    question = turns[-1]["content"]
    reply: Turn = {"role": "assistant", "content": "", "display": f"*{t(lang, 'thinking')}*", "message_id": ""}
    turns.append(reply)
    yield chatbot_update(service, turns), turns, conversation_id
    try:
        if not kbs:
            raise RagError(t(lang, "no_kb"))
        if not conversation_id:
            conversation_id = service.create_conversation(owner, kbs).id
        pieces: list[str] = []
        for event, message_id in service.stream_in_conversation(conversation_id, owner, question, options):
            if event.kind == "token":
                pieces.append(event.text)
                reply["display"] = plain_markdown("".join(pieces))
                yield chatbot_update(service, turns), turns, conversation_id
            elif event.kind == "done" and event.answer is not None:
                answer = event.answer
                reply["display"] = assistant_message(answer.answer, answer.citations, answer.grounded, lang, kbs[0])
                reply["message_id"] = str(message_id or "")
    except Exception as exc:  # the chat must show a reason, never hang on a traceback
        if not isinstance(exc, RagError):
            log.exception("answering failed")
        reply["display"] = error_text(lang, exc)
    yield chatbot_update(service, turns), turns, conversation_id


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    question: gr.Textbox
    turns: gr.State
    conversation_id: gr.Textbox
    sidebar: gr.Radio
    title: gr.Textbox
    filters: FilterPanel

    @property
    def restore_outputs(self) -> list[Any]:
        return [self.chatbot, self.turns, self.conversation_id, self.sidebar, self.title]


@dataclass
class ConversationViews:
    """The sidebar's handlers, apart from the layout so they read as plain functions."""

    service: RagService

    def sidebar(self, conversation_id: str, lang: str, request: gr.Request) -> dict[str, Any]:
        choices = sidebar_choices(self.service, owner_of(request), lang)
        value = conversation_id if any(cid == conversation_id for _, cid in choices) else None
        return gr.update(choices=choices, value=value)

    def answered(self, conversation_id: str, title: str, lang: str, request: gr.Request) -> tuple[Any, str]:
        """After an answer: the sidebar (a new conversation is listed, titled by its first question) and the
        title box, filled with that title unless something is typed there."""
        if title or not conversation_id:
            return self.sidebar(conversation_id, lang, request), title
        try:
            stored = self.service.get_conversation(conversation_id, owner_of(request))[0].title
        except RagError:
            stored = ""
        return self.sidebar(conversation_id, lang, request), stored

    def open(self, conversation_id: str | None, lang: str, request: gr.Request) -> tuple[Any, ...]:
        """(chat window, turns, conversation id, sidebar, title, KB selector) for a stored conversation."""
        owner = owner_of(request)
        if not conversation_id:
            return self.closed(lang, request)
        try:
            conversation, messages = self.service.get_conversation(conversation_id, owner)
        except RagError:  # deleted, or someone else's: start afresh
            return self.closed(lang, request)
        turns = stored_turns(self.service, messages, conversation.kbs[0], lang)
        known = {info.name for info in self.service.list_kbs()}  # its KB may have been deleted since
        return (
            chatbot_update(self.service, turns),
            turns,
            conversation.id,
            self.sidebar(conversation.id, lang, request),
            conversation.title,
            gr.update(value=conversation.kbs[0]) if conversation.kbs[0] in known else gr.update(),
        )

    def closed(self, lang: str, request: gr.Request) -> tuple[Any, ...]:
        return (gr.update(value=[], feedback_value=[]), [], "", self.sidebar("", lang, request), "", gr.update())

    def rename(self, conversation_id: str, title: str, lang: str, request: gr.Request) -> tuple[Any, str]:
        if not conversation_id:
            return gr.update(), f"⚠️ {t(lang, 'no_conversation')}"
        try:
            self.service.rename_conversation(conversation_id, owner_of(request), title or "")
        except RagError as exc:
            return gr.update(), error_text(lang, exc)
        return self.sidebar(conversation_id, lang, request), "✅ " + t(lang, "renamed")

    def delete(self, conversation_id: str, lang: str, request: gr.Request) -> tuple[Any, ...]:
        if conversation_id:
            try:
                self.service.delete_conversation(conversation_id, owner_of(request))
            except RagError as exc:
                return (*[gr.update()] * 6, error_text(lang, exc))
        return (*self.closed(lang, request), "🗑️ " + t(lang, "conversation_deleted") if conversation_id else "")

    def rate(
        self, conversation_id: str, turns: list[Turn], like: gr.LikeData, request: gr.Request, lang: str
    ) -> tuple[dict[str, Any], str, Any]:
        """A thumb on an answer: stored at once; the comment box then applies to that answer."""
        index = like.index if isinstance(like.index, int) else like.index[0]
        turn = turns[index] if 0 <= index < len(turns) else None
        if turn is None or turn["role"] != "assistant" or not turn["message_id"] or not conversation_id:
            return {}, f"⚠️ {t(lang, 'not_rateable')}", gr.update(visible=False)
        if like.liked not in (True, False):  # a thumb clicked off again: the stored rating stays
            return {}, t(lang, "rating_kept"), gr.update(visible=False)
        rating = "up" if like.liked is True else "down"
        try:
            self.service.rate_answer(conversation_id, owner_of(request), int(turn["message_id"]), rating)
        except RagError as exc:
            return {}, error_text(lang, exc), gr.update(visible=False)
        pending = {"message_id": turn["message_id"], "rating": rating}
        return pending, t(lang, "rated_up" if rating == "up" else "rated_down"), gr.update(visible=True)

    def comment(
        self, conversation_id: str, pending: dict[str, str], comment: str, lang: str, request: gr.Request
    ) -> tuple[str, str]:
        if not pending or not conversation_id:
            return comment, f"⚠️ {t(lang, 'rate_first')}"
        try:
            self.service.rate_answer(conversation_id, owner_of(request), int(pending["message_id"]),
                                     pending["rating"], (comment or "").strip())  # type: ignore[arg-type]
        except RagError as exc:
            return comment, error_text(lang, exc)
        return "", "✅ " + t(lang, "comment_saved")


def build_chat_tab(service: RagService, kb: gr.Dropdown, lang: gr.Dropdown, text: Relabeler) -> ChatTab:
    defaults = SettingsDefaults.from_settings(service.settings)
    views = ConversationViews(service)
    turns = gr.State([])
    pending_rating = gr.State({})
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220, elem_id="conversation-sidebar"):
            text.bind(gr.Markdown(t("en", "conversations_title")), value="conversations_title")
            new = text.bind(
                gr.Button(t("en", "clear"), size="sm", variant="primary", elem_id="clear-chat"), value="clear"
            )
            sidebar = text.bind(
                gr.Radio(choices=[], value=None, label=t("en", "conversations"), elem_id="conversation-list"),
                label="conversations",
            )
            title = text.bind(
                gr.Textbox(label=t("en", "conversation_title"), elem_id="conversation-title", max_lines=1),
                label="conversation_title",
            )
            with gr.Row():
                rename = text.bind(
                    gr.Button(t("en", "rename"), size="sm", elem_id="rename-conversation"), value="rename"
                )
                delete = text.bind(
                    gr.Button(t("en", "delete_conversation"), size="sm", variant="stop",
                              elem_id="delete-conversation"),
                    value="delete_conversation",
                )
            sidebar_status = gr.Markdown(elem_id="conversation-status")
            conversation_id = gr.Textbox(visible=False, elem_id="conversation-id")
        with gr.Column(scale=4):
            chatbot = text.bind(
                gr.Chatbot(
                    label=t("en", "chatbot"),
                    height=560,
                    elem_id="chatbot",
                    placeholder=t("en", "chat_placeholder"),
                    buttons=["copy"],
                    feedback_options=("Like", "Dislike"),
                    group_consecutive_messages=False,
                ),
                label="chatbot",
                placeholder="chat_placeholder",
            )
            with gr.Row(equal_height=True):
                question = text.bind(
                    gr.Textbox(
                        label=t("en", "question"),
                        placeholder=t("en", "question_placeholder"),
                        lines=1,
                        max_lines=6,
                        scale=6,
                        elem_id="question",
                        autofocus=True,
                        submit_btn=False,
                    ),
                    label="question",
                    placeholder="question_placeholder",
                )
                send = text.bind(
                    gr.Button(t("en", "send"), variant="primary", scale=1, elem_id="send"), value="send"
                )
            feedback_status = gr.Markdown(elem_id="feedback-status")
            with gr.Row(equal_height=True, visible=False) as comment_row:
                comment = text.bind(
                    gr.Textbox(label=t("en", "feedback_comment"), scale=6, max_lines=4, elem_id="feedback-comment"),
                    label="feedback_comment",
                )
                save_comment = text.bind(
                    gr.Button(t("en", "send_feedback"), scale=1, elem_id="send-feedback"), value="send_feedback"
                )
        with gr.Column(scale=2, min_width=260):
            filters = build_filter_panel(service, text)
            settings = build_settings_panel(defaults, text)

    def answer(
        kb_name: str | None, extra: list[str] | None, cid: str, current: list[Turn], language: str,
        tags: list[str] | None, formats: list[str] | None, source: str,
        top_k: float, custom_fusion: bool, bm25_weight: float, dense_weight: float, threshold: float,
        temperature: float, max_tokens: float, request: gr.Request,
    ) -> Iterator[tuple[dict[str, Any], list[Turn], str]]:
        # The settings arrive in SettingsPanel.inputs order; the request (the login) comes last.
        options = chat_options(service, top_k, custom_fusion, bm25_weight, dense_weight, threshold, temperature,
                               max_tokens, document_filter(tags, formats, source))
        kbs = chat_kbs(service, kb_name, extra)
        yield from stream_reply(service, kbs, cid, current, language, owner_of(request), options)

    for trigger in (question.submit, send.click):
        trigger(
            add_question,
            inputs=[question, turns],
            outputs=[question, turns, chatbot],
            queue=False,
        ).then(
            answer,
            inputs=[kb, filters.extra_kbs, conversation_id, turns, lang, filters.tags, filters.formats,
                    filters.source, *settings.inputs],
            outputs=[chatbot, turns, conversation_id],
            concurrency_id="answer",
            concurrency_limit=1,
        ).then(
            views.answered, inputs=[conversation_id, title, lang], outputs=[sidebar, title], queue=False
        ).then(None, inputs=conversation_id, js=SET_URL_JS, queue=False)

    filter_inputs = [kb, filters.tags, filters.formats, filters.extra_kbs]
    kb.change(functools.partial(filter_choices, service), inputs=filter_inputs, outputs=filters.choice_outputs, queue=False)

    closed_outputs = [chatbot, turns, conversation_id, sidebar, title, kb]
    sidebar.input(views.open, inputs=[sidebar, lang], outputs=closed_outputs, queue=False).then(
        None, inputs=conversation_id, js=SET_URL_JS, queue=False
    )
    # The chat window's own trash button too: it closes the conversation (kept in the sidebar), as "New" does.
    for start_new in (new.click, chatbot.clear):
        start_new(views.closed, inputs=lang, outputs=closed_outputs, queue=False).then(
            None, inputs=conversation_id, js=SET_URL_JS, queue=False
        )
    # A conversation asks the KBs it was started with: choosing others starts a new one.
    for chosen in (kb.input, filters.extra_kbs.input):
        chosen(views.closed, inputs=lang, outputs=closed_outputs, queue=False).then(
            None, inputs=conversation_id, js=SET_URL_JS, queue=False
        )
    rename.click(views.rename, inputs=[conversation_id, title, lang], outputs=[sidebar, sidebar_status], queue=False)
    delete.click(
        views.delete, inputs=[conversation_id, lang], outputs=[*closed_outputs, sidebar_status], queue=False
    ).then(None, inputs=conversation_id, js=SET_URL_JS, queue=False)

    def rate(cid: str, current: list[Turn], language: str, like: gr.LikeData, request: gr.Request) -> Any:
        return views.rate(cid, current, like, request, language)

    chatbot.like(rate, inputs=[conversation_id, turns, lang],
                 outputs=[pending_rating, feedback_status, comment_row], queue=False)
    save_comment.click(views.comment, inputs=[conversation_id, pending_rating, comment, lang],
                       outputs=[comment, feedback_status], queue=False)
    return ChatTab(chatbot, question, turns, conversation_id, sidebar, title, filters)
