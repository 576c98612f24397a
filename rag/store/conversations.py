"""Conversations, their messages and the feedback on answers, in the catalog's database.

Three tables of their own, created when the store opens (``CREATE TABLE IF NOT EXISTS``: older
catalogs gain them, nothing else is touched). Feedback copies the question, the answer, its sources and
the settings used, so it outlives the conversation it was given in (an evaluation set should not
shrink when a user tidies their sidebar).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.errors import ConversationNotFound, InvalidInput
from rag.prompts import detect_language
from rag.store.catalog import Catalog

Rating = Literal["up", "down"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,             -- the API key's label, or "local" without keys
    kbs         TEXT NOT NULL,             -- JSON list of KB names
    title       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations (owner, updated_at);

CREATE TABLE IF NOT EXISTS conversation_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL,         -- user | assistant
    content         TEXT NOT NULL,
    model_text      TEXT,                  -- an answer's model text alone (content adds quoted evidence)
    kb              TEXT,                  -- the KB an answer came from
    grounded        INTEGER,
    citations       TEXT,                  -- JSON, assistant messages only
    evidence        TEXT,                  -- JSON
    settings        TEXT,                  -- JSON: the generation settings of an answer
    created_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON conversation_messages (conversation_id, id);

CREATE TABLE IF NOT EXISTS message_feedback (
    message_id      INTEGER PRIMARY KEY,   -- no foreign key: feedback outlives its conversation
    conversation_id TEXT NOT NULL,
    owner           TEXT NOT NULL,
    kb              TEXT,
    rating          TEXT NOT NULL,         -- up | down
    comment         TEXT NOT NULL DEFAULT '',
    expected        TEXT,                  -- the right answer, when the rater gave it
    question        TEXT NOT NULL,
    answer          TEXT NOT NULL,
    model_text      TEXT,
    sources         TEXT NOT NULL,         -- JSON: the answer's citations
    settings        TEXT,                  -- JSON
    created_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_kb ON message_feedback (kb, rating, created_at);
"""


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
    """One instance per catalog; thread-safe the way the catalog is (its per-thread connection)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        catalog.db.executescript(SCHEMA)

    # -- conversations -----------------------------------------------------------------------
    def create(self, owner: str, kbs: list[str], title: str = "") -> Conversation:
        now = time.time()
        conversation = Conversation(uuid.uuid4().hex, owner, list(kbs), title, now, now)
        with self.catalog.transaction() as db:
            db.execute("INSERT INTO conversations (id, owner, kbs, title, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (conversation.id, owner, json.dumps(kbs, ensure_ascii=False), title, now, now))
        return conversation

    def list(self, owner: str | None = None, limit: int = 200) -> list[Conversation]:
        """Newest first; ``owner=None``: everyone's (an admin's view)."""
        if owner is None:
            rows = self.catalog.db.execute(
                "SELECT * FROM conversations ORDER BY updated_at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.catalog.db.execute(
                "SELECT * FROM conversations WHERE owner=? ORDER BY updated_at DESC LIMIT ?",
                (owner, limit)).fetchall()
        return [_conversation(row) for row in rows]

    def get(self, conversation_id: str, owner: str | None = None) -> Conversation:
        """A conversation of ``owner`` (``None``: anyone's); another owner's reads as not found."""
        row = self.catalog.db.execute("SELECT * FROM conversations WHERE id=?", (conversation_id,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            raise ConversationNotFound(f"conversation '{conversation_id}' not found")
        return _conversation(row)

    def update(self, conversation_id: str, title: str | None = None, kbs: list[str] | None = None) -> None:
        with self.catalog.transaction() as db:
            if title is not None:
                db.execute("UPDATE conversations SET title=?, updated_at=? WHERE id=?",
                           (title, time.time(), conversation_id))
            if kbs is not None:
                db.execute("UPDATE conversations SET kbs=?, updated_at=? WHERE id=?",
                           (json.dumps(kbs, ensure_ascii=False), time.time(), conversation_id))

    def delete(self, conversation_id: str) -> None:
        with self.catalog.transaction() as db:
            db.execute("DELETE FROM conversations WHERE id=?", (conversation_id,))

    # -- messages ----------------------------------------------------------------------------
    def messages(self, conversation_id: str) -> list[StoredMessage]:
        rows = self.catalog.db.execute(
            "SELECT * FROM conversation_messages WHERE conversation_id=? ORDER BY id", (conversation_id,)).fetchall()
        return [_message(row) for row in rows]

    def add_exchange(self, conversation_id: str, question: str, answer: AnswerRecord,
                     title: str | None = None) -> int:
        """Store a question and its answer together (a failed answer leaves no orphan question);
        returns the answer's message id. ``title``: set when the conversation has none yet."""
        now = time.time()
        with self.catalog.transaction() as db:
            db.execute("INSERT INTO conversation_messages (conversation_id, role, content, created_at) "
                       "VALUES (?, 'user', ?, ?)", (conversation_id, question, now))
            cursor = db.execute(
                "INSERT INTO conversation_messages (conversation_id, role, content, model_text, kb, grounded, "
                "citations, evidence, settings, created_at) VALUES (?, 'assistant', ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, answer.content, answer.model_text, answer.kb, int(answer.grounded),
                 json.dumps(answer.citations, ensure_ascii=False), json.dumps(answer.evidence, ensure_ascii=False),
                 json.dumps(answer.settings, ensure_ascii=False), now))
            db.execute("UPDATE conversations SET updated_at=?, title=CASE WHEN title='' THEN ? ELSE title END "
                       "WHERE id=?", (now, title or "", conversation_id))
            message_id = cursor.lastrowid
        assert message_id is not None
        return message_id

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
        with self.catalog.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO message_feedback (message_id, conversation_id, owner, kb, rating, comment, "
                "expected, question, answer, model_text, sources, settings, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, conversation.id, conversation.owner, answer.kb, rating, comment, record.expected, question,
                 answer.content, answer.model_text, json.dumps(answer.citations, ensure_ascii=False),
                 json.dumps(answer.settings, ensure_ascii=False), record.created_at))
        return record

    def feedback(self, kb: str | None = None, rating: Rating | None = None, limit: int = 100_000) -> list[FeedbackRecord]:
        """Oldest first, so an export reads in the order the questions were asked."""
        clauses, args = [], []
        if kb is not None:
            clauses.append("kb=?")
            args.append(kb)
        if rating is not None:
            clauses.append("rating=?")
            args.append(rating)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.catalog.db.execute(
            f"SELECT * FROM message_feedback {where} ORDER BY created_at, message_id LIMIT ?", (*args, limit)).fetchall()
        return [FeedbackRecord(row["message_id"], row["conversation_id"], row["owner"], row["kb"], row["rating"],
                               row["comment"], row["expected"], row["question"], row["answer"], json.loads(row["sources"]),
                               json.loads(row["settings"] or "{}"), row["created_at"],
                               row["model_text"] or "") for row in rows]

    def feedback_of(self, message_ids: list[int]) -> dict[int, str]:
        """The rating of each of these messages that has one."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self.catalog.db.execute(
            f"SELECT message_id, rating FROM message_feedback WHERE message_id IN ({marks})", message_ids).fetchall()
        return {row["message_id"]: row["rating"] for row in rows}


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(row["id"], row["owner"], json.loads(row["kbs"]), row["title"], row["created_at"],
                        row["updated_at"])


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"], conversation_id=row["conversation_id"], role=row["role"], content=row["content"],
        model_text=row["model_text"] or "",
        kb=row["kb"], grounded=None if row["grounded"] is None else bool(row["grounded"]),
        citations=json.loads(row["citations"] or "[]"), evidence=json.loads(row["evidence"] or "[]"),
        settings=json.loads(row["settings"] or "{}"), created_at=row["created_at"],
    )
