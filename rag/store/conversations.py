"""Conversations, their messages and the feedback on answers, in the catalog's database.

Three tables of their own, created by the catalog's migrations (rag/store/migrations). Feedback copies the question, the answer, its sources and
the settings used, so it outlives the conversation it was given in (an evaluation set should not
shrink when a user tidies their sidebar).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from rag.errors import ConversationNotFound, InvalidInput
from rag.prompts import detect_language
from rag.store.catalog import Catalog

Rating = Literal["up", "down"]

@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    owner: str
    kbs: list[str]
    title: str
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "kbs": self.kbs, "title": self.title,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    conversation_id: str
    role: str
    content: str
    model_text: str = ""
    kb: str | None = None
    grounded: bool | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "role": self.role, "content": self.content,
                                "created_at": self.created_at}
        if self.role == "assistant":
            data.update(citations=self.citations, evidence=self.evidence, grounded=self.grounded, kb=self.kb)
        return data


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """What an assistant message keeps of an answer."""

    kb: str
    content: str
    grounded: bool
    citations: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    settings: dict[str, Any]
    model_text: str = ""


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    message_id: int
    conversation_id: str
    owner: str
    kb: str | None
    rating: str
    comment: str
    expected: str | None
    question: str
    answer: str
    sources: list[dict[str, Any]]
    settings: dict[str, Any]
    created_at: float
    model_text: str = ""

    def to_question(self) -> dict[str, Any]:
        """One line of a question file that ``rag eval --questions`` reads (rag/qa.py's format).

        The gold answer is the rater's ``expected`` answer; failing that, a liked answer's model text
        (the answer without its quoted evidence, so it stays a regression check). The gold document is a liked answer's first cited source.
        A disliked answer with no ``expected`` has no gold answer: edit its ``answers`` before relying on it.
        The answer given and its sources ride along under names the question reader ignores.
        """
        liked = self.rating == "up"
        answers = [self.expected] if self.expected else ([self.model_text or self.answer] if liked else [])
        doc = self.sources[0].get("source") if liked and self.sources else None
        return {"id": f"feedback-{self.message_id}", "question": self.question,
                "category": detect_language(self.question), "kind": "feedback", "answers": answers, "doc": doc,
                "rating": self.rating, "comment": self.comment, "given_answer": self.answer,
                "given_sources": self.sources, "kb": self.kb, "conversation_id": self.conversation_id,
                "settings": self.settings, "rated_at": self.created_at}


class ConversationStore:
    """One instance per catalog; thread-safe the way the catalog is."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.db = catalog.database

    def _rows(self, sql: str, params: dict[str, Any], expanding: str | None = None) -> list[Any]:
        query = sa.text(sql)
        if expanding:
            query = query.bindparams(sa.bindparam(expanding, expanding=True))
        with self.db.connect() as conn:
            return list(conn.execute(query, params).mappings().all())

    # -- conversations -----------------------------------------------------------------------
    def create(self, owner: str, kbs: list[str], title: str = "") -> Conversation:
        now = time.time()
        conversation = Conversation(uuid.uuid4().hex, owner, list(kbs), title, now, now)
        with self.catalog.transaction() as conn:
            conn.execute(sa.text("INSERT INTO conversations (id, owner, kbs, title, created_at, updated_at) "
                                 "VALUES (:id, :owner, :kbs, :title, :now, :now)"),
                         {"id": conversation.id, "owner": owner, "kbs": json.dumps(kbs, ensure_ascii=False),
                          "title": title, "now": now})
        return conversation

    def list(self, owner: str | None = None, limit: int = 200) -> list[Conversation]:
        """Newest first; ``owner=None``: everyone's (an admin's view)."""
        where = "" if owner is None else "WHERE owner=:owner "
        rows = self._rows(f"SELECT * FROM conversations {where}ORDER BY updated_at DESC LIMIT :limit",
                          {"owner": owner, "limit": limit})
        return [_conversation(row) for row in rows]

    def get(self, conversation_id: str, owner: str | None = None) -> Conversation:
        """A conversation of ``owner`` (``None``: anyone's); another owner's reads as not found."""
        rows = self._rows("SELECT * FROM conversations WHERE id=:id", {"id": conversation_id})
        if not rows or (owner is not None and rows[0]["owner"] != owner):
            raise ConversationNotFound(f"conversation '{conversation_id}' not found")
        return _conversation(rows[0])

    def update(self, conversation_id: str, title: str | None = None, kbs: list[str] | None = None) -> None:
        with self.catalog.transaction() as conn:
            if title is not None:
                conn.execute(sa.text("UPDATE conversations SET title=:title, updated_at=:now WHERE id=:id"),
                             {"title": title, "now": time.time(), "id": conversation_id})
            if kbs is not None:
                conn.execute(sa.text("UPDATE conversations SET kbs=:kbs, updated_at=:now WHERE id=:id"),
                             {"kbs": json.dumps(kbs, ensure_ascii=False), "now": time.time(), "id": conversation_id})

    def delete(self, conversation_id: str) -> None:
        with self.catalog.transaction() as conn:
            conn.execute(sa.text("DELETE FROM conversations WHERE id=:id"), {"id": conversation_id})

    # -- messages ----------------------------------------------------------------------------
    def messages(self, conversation_id: str) -> list[StoredMessage]:
        rows = self._rows("SELECT * FROM conversation_messages WHERE conversation_id=:id ORDER BY id",
                          {"id": conversation_id})
        return [_message(row) for row in rows]

    def add_exchange(self, conversation_id: str, question: str, answer: AnswerRecord,
                     title: str | None = None) -> int:
        """Store a question and its answer together (a failed answer leaves no orphan question);
        returns the answer's message id. ``title``: set when the conversation has none yet."""
        now = time.time()
        with self.catalog.transaction() as conn:
            conn.execute(sa.text("INSERT INTO conversation_messages (conversation_id, role, content, created_at) "
                                 "VALUES (:id, 'user', :content, :now)"),
                         {"id": conversation_id, "content": question, "now": now})
            message_id = conn.execute(sa.text(
                "INSERT INTO conversation_messages (conversation_id, role, content, model_text, kb, grounded, "
                "citations, evidence, settings, created_at) VALUES (:id, 'assistant', :content, :model_text, :kb, "
                ":grounded, :citations, :evidence, :settings, :now) RETURNING id"),
                {"id": conversation_id, "content": answer.content, "model_text": answer.model_text, "kb": answer.kb,
                 "grounded": int(answer.grounded), "citations": json.dumps(answer.citations, ensure_ascii=False),
                 "evidence": json.dumps(answer.evidence, ensure_ascii=False),
                 "settings": json.dumps(answer.settings, ensure_ascii=False), "now": now}).scalar_one()
            conn.execute(sa.text("UPDATE conversations SET updated_at=:now, "
                                 "title=CASE WHEN title='' THEN :title ELSE title END WHERE id=:id"),
                         {"now": now, "title": title or "", "id": conversation_id})
        return int(message_id)

    # -- feedback ----------------------------------------------------------------------------
    def set_feedback(self, conversation: Conversation, message_id: int, rating: Rating, comment: str = "",
                     expected: str | None = None) -> FeedbackRecord:
        """Rate an answer of ``conversation`` (again: the new rating replaces the old)."""
        if rating not in ("up", "down"):
            raise InvalidInput("rating must be 'up' or 'down'")
        messages = self.messages(conversation.id)
        position = next((i for i, m in enumerate(messages) if m.id == message_id), None)
        if position is None or messages[position].role != "assistant":
            raise ConversationNotFound(f"conversation '{conversation.id}' has no answer with id {message_id}")
        answer = messages[position]
        question = next((m.content for m in reversed(messages[:position]) if m.role == "user"), "")
        record = FeedbackRecord(message_id, conversation.id, conversation.owner, answer.kb, rating, comment,
                                expected or None, question, answer.content, answer.citations, answer.settings, time.time(),
                                answer.model_text)
        with self.catalog.transaction() as conn:
            conn.execute(sa.text(
                "INSERT INTO message_feedback (message_id, conversation_id, owner, kb, rating, comment, expected, "
                "question, answer, model_text, sources, settings, created_at) VALUES (:message_id, :conversation_id, "
                ":owner, :kb, :rating, :comment, :expected, :question, :answer, :model_text, :sources, :settings, "
                ":now) ON CONFLICT(message_id) DO UPDATE SET conversation_id=excluded.conversation_id, "
                "owner=excluded.owner, kb=excluded.kb, rating=excluded.rating, comment=excluded.comment, "
                "expected=excluded.expected, question=excluded.question, answer=excluded.answer, "
                "model_text=excluded.model_text, sources=excluded.sources, settings=excluded.settings, "
                "created_at=excluded.created_at"),
                {"message_id": message_id, "conversation_id": conversation.id, "owner": conversation.owner,
                 "kb": answer.kb, "rating": rating, "comment": comment, "expected": record.expected,
                 "question": question, "answer": answer.content, "model_text": answer.model_text,
                 "sources": json.dumps(answer.citations, ensure_ascii=False),
                 "settings": json.dumps(answer.settings, ensure_ascii=False), "now": record.created_at})
        return record

    def feedback(self, kb: str | None = None, rating: Rating | None = None, limit: int = 100_000) -> list[FeedbackRecord]:
        """Oldest first, so an export reads in the order the questions were asked."""
        clauses = [clause for clause, value in (("kb=:kb", kb), ("rating=:rating", rating)) if value is not None]
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self._rows(f"SELECT * FROM message_feedback {where}ORDER BY created_at, message_id LIMIT :limit",
                          {"kb": kb, "rating": rating, "limit": limit})
        return [FeedbackRecord(row["message_id"], row["conversation_id"], row["owner"], row["kb"], row["rating"],
                               row["comment"], row["expected"], row["question"], row["answer"], json.loads(row["sources"]),
                               json.loads(row["settings"] or "{}"), row["created_at"],
                               row["model_text"] or "") for row in rows]

    def feedback_of(self, message_ids: list[int]) -> dict[int, str]:
        """The rating of each of these messages that has one."""
        if not message_ids:
            return {}
        rows = self._rows("SELECT message_id, rating FROM message_feedback WHERE message_id IN :ids",
                          {"ids": [int(i) for i in message_ids]}, expanding="ids")
        return {row["message_id"]: row["rating"] for row in rows}


def _conversation(row: Any) -> Conversation:
    return Conversation(row["id"], row["owner"], json.loads(row["kbs"]), row["title"], row["created_at"],
                        row["updated_at"])


def _message(row: Any) -> StoredMessage:
    return StoredMessage(
        id=row["id"], conversation_id=row["conversation_id"], role=row["role"], content=row["content"],
        model_text=row["model_text"] or "",
        kb=row["kb"], grounded=None if row["grounded"] is None else bool(row["grounded"]),
        citations=json.loads(row["citations"] or "[]"), evidence=json.loads(row["evidence"] or "[]"),
        settings=json.loads(row["settings"] or "{}"), created_at=row["created_at"],
    )
