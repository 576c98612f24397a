"""The chat tab: a streaming, multi-turn conversation with one knowledge base, sources under each answer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from rag.chat import ChatEvent, stream_answer
from rag.errors import RagError
from rag.llm.base import ChatMessage
from rag.service import RagService
from webui.i18n import Relabeler, t
from webui.render import assistant_message, plain_markdown
from webui.settings_panel import SettingsDefaults, base_generation_params, build_settings_panel, chat_options

log = logging.getLogger(__name__)

# A turn of the conversation: "content" is what the model sees on follow-ups (empty: left out),
# "display" is what the chat window shows (the answer plus its sources).
Turn = dict[str, str]


def chatbot_value(conversation: list[Turn]) -> list[dict[str, str]]:
    return [{"role": turn["role"], "content": turn["display"]} for turn in conversation]


def model_history(conversation: list[Turn]) -> list[ChatMessage]:
    return [
        {"role": turn["role"], "content": turn["content"]}
        for turn in conversation  # type: ignore[misc]
        if turn["content"]
    ]


def add_question(
    question: str, conversation: list[Turn] | None
) -> tuple[str, list[Turn], list[dict[str, str]]]:
    conversation = list(conversation or [])
    question = (question or "").strip()
    if question:
        conversation.append({"role": "user", "content": question, "display": plain_markdown(question)})
    return "", conversation, chatbot_value(conversation)


def stream_reply(
    service: RagService, kb: str | None, conversation: list[Turn], lang: str, *settings: Any
) -> Iterator[tuple[list[dict[str, str]], list[Turn]]]:
    """Answer the last user turn, yielding the chat window after every generated piece."""
    conversation = list(conversation or [])
    if not conversation or conversation[-1]["role"] != "user":
        yield chatbot_value(conversation), conversation
        return
    reply: Turn = {"role": "assistant", "content": "", "display": f"*{t(lang, 'thinking')}*"}
    conversation.append(reply)
    yield chatbot_value(conversation), conversation
    try:
        if not kb:
            raise RagError(t(lang, "no_kb"))
        options = chat_options(base_generation_params(service), *settings)
        pieces: list[str] = []
        event: ChatEvent
        for event in stream_answer(service, kb, model_history(conversation[:-1]), options):
            if event.kind == "token":
                pieces.append(event.text)
                reply["display"] = plain_markdown("".join(pieces))
                yield chatbot_value(conversation), conversation
            elif event.kind == "done" and event.answer is not None:
                answer = event.answer
                reply["content"] = answer.answer
                reply["display"] = assistant_message(answer.answer, answer.citations, answer.grounded, lang)
    except RagError as exc:
        conversation[-2]["content"] = ""  # a question that got no answer is not history for follow-ups
        reply["display"] = f"⚠️ **{t(lang, 'error')}:** {plain_markdown(exc.message)}"
    except Exception as exc:  # the chat must show a reason, never hang on a traceback
        log.exception("answering failed")
        conversation[-2]["content"] = ""
        reply["display"] = f"⚠️ **{t(lang, 'error')}:** {plain_markdown(f'{type(exc).__name__}: {exc}')}"
    yield chatbot_value(conversation), conversation


@dataclass
class ChatTab:
    chatbot: gr.Chatbot
    question: gr.Textbox
    conversation: gr.State


def build_chat_tab(service: RagService, kb: gr.Dropdown, lang: gr.Dropdown, text: Relabeler) -> ChatTab:
    defaults = SettingsDefaults.from_settings(service.settings)
    conversation = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            chatbot = text.bind(
                gr.Chatbot(
                    label=t("en", "chatbot"),
                    height=560,
                    elem_id="chatbot",
                    placeholder=t("en", "chat_placeholder"),
                    buttons=["copy"],
                    feedback_options=None,
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
            clear = text.bind(gr.Button(t("en", "clear"), size="sm", elem_id="clear-chat"), value="clear")
        with gr.Column(scale=2, min_width=260):
            settings = build_settings_panel(defaults, text)

    def answer(
        kb_name: str | None, turns: list[Turn], language: str, *values: Any
    ) -> Iterator[tuple[list[dict[str, str]], list[Turn]]]:
        yield from stream_reply(service, kb_name, turns, language, *values)

    for trigger in (question.submit, send.click):
        trigger(
            add_question,
            inputs=[question, conversation],
            outputs=[question, conversation, chatbot],
            queue=False,
        ).then(
            answer,
            inputs=[kb, conversation, lang, *settings.inputs],
            outputs=[chatbot, conversation],
            concurrency_id="answer",
            concurrency_limit=1,
        )
    clear.click(lambda: ([], []), outputs=[chatbot, conversation], queue=False)
    return ChatTab(chatbot, question, conversation)
