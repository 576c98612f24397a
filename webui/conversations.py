"""Stored conversations as the chat tab shows them: the sidebar's choices and a conversation's turns.

A conversation belongs to whoever is logged in to the UI (the login's user name), or to ``local``
without API keys, the same owner the REST API gives keyless callers, so a conversation started over
``/api/conversations`` on a keyless server shows up in the UI's sidebar too.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from rag.service import RagService
from rag.store.conversations import Conversation, StoredMessage
from rag.types import Citation
from webui.i18n import t
from webui.render import assistant_message, plain_markdown

LOCAL_OWNER = "local"  # rag/api/conversations.py's owner of keyless callers
SIDEBAR_LIMIT = 50

# A turn of the chat window: "display" is what it shows; "message_id" is an answer's stored id ("" for
# a question, or an answer that failed and was not stored).
Turn = dict[str, str]

FEEDBACK_LABEL = {"up": "Like", "down": "Dislike"}  # Gradio's thumbs, by our ratings


def owner_of(request: gr.Request | None) -> str:
    """The UI login's user name; ``local`` when the UI asks for no login."""
    name = getattr(request, "username", None) if request is not None else None
    return str(name) if name else LOCAL_OWNER


def conversation_label(conversation: Conversation, lang: str) -> str:
    title = conversation.title or t(lang, "untitled")
    when = time.strftime("%m-%d %H:%M", time.localtime(conversation.updated_at))
    return f"{title} · {'+'.join(conversation.kbs)} · {when}"


def sidebar_choices(service: RagService, owner: str, lang: str) -> list[tuple[str, str]]:
    """(label, conversation id) of the owner's conversations, newest first."""
    return [(conversation_label(c, lang), c.id) for c in service.list_conversations(owner)[:SIDEBAR_LIMIT]]


def citations_of(message: StoredMessage) -> list[Citation]:
    fields = set(Citation.__dataclass_fields__)
    return [Citation(**{k: v for k, v in c.items() if k in fields}) for c in message.citations]


def stored_turns(
    service: RagService, messages: list[StoredMessage], kb: str, lang: str
) -> list[Turn]:
    turns: list[Turn] = []
    for message in messages:
        if message.role == "assistant":
            display = assistant_message(
                message.content, citations_of(message), bool(message.grounded), lang, message.kb or kb
            )
            turns.append({"role": "assistant", "display": display, "message_id": str(message.id)})
        else:
            turns.append({"role": "user", "display": plain_markdown(message.content), "message_id": ""})
    return turns


def feedback_values(service: RagService, turns: list[Turn]) -> list[str | None]:
    """The thumbs to show, one per assistant turn, from the stored ratings."""
    ids = [int(turn["message_id"]) for turn in turns if turn["role"] == "assistant" and turn["message_id"]]
    ratings = service.answer_ratings(ids)
    values: list[str | None] = []
    for turn in turns:
        if turn["role"] == "assistant":
            rating = ratings.get(int(turn["message_id"])) if turn["message_id"] else None
            values.append(FEEDBACK_LABEL.get(rating) if rating else None)
    return values


def chatbot_update(service: RagService, turns: list[Turn]) -> dict[str, Any]:
    value = [{"role": turn["role"], "content": turn["display"]} for turn in turns]
    return gr.update(value=value, feedback_value=feedback_values(service, turns))
