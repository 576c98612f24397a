"""Typed request and response bodies. Shapes follow ../shared/CONTRACT.md; extra fields only extend it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from rag.filters import MAX_KBS, DocumentFilter

# What the service accepts as a KB name (rag.service.KB_NAME), published in the schema; the service checks it
# and answers 422 `invalid_input` naming the rule.
KB_NAME_PATTERN = r"^[\w-]{1,64}$"
KB_NAME_SCHEMA = {"pattern": KB_NAME_PATTERN, "minLength": 1, "maxLength": 64}
KBName = Annotated[str, Path(description="1-64 letters (Unicode allowed), digits, '_' or '-'",
                             json_schema_extra=KB_NAME_SCHEMA)]
MAX_MESSAGES = 200


class Request(BaseModel):
    """A request body: NaN and infinite numbers are refused (JSON parsers accept `Infinity`)."""

    model_config = ConfigDict(allow_inf_nan=False)

# -- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# -- knowledge bases ---------------------------------------------------------------------------


class KBCreate(Request):
    name: str = Field(description="1-64 letters (Unicode allowed), digits, '_' or '-'",
                      json_schema_extra=KB_NAME_SCHEMA)
    description: str = Field(default="", max_length=2000)


class KBOut(BaseModel):
    name: str
    description: str
    documents: int
    chunks: int
    generation: int
    created_at: float


class KBList(BaseModel):
    kbs: list[KBOut]


class KBDeleted(BaseModel):
    name: str
    deleted: bool = True


# -- documents ---------------------------------------------------------------------------------


class DocumentOut(BaseModel):
    doc_id: str
    source: str
    status: str
    chunks: int
    error: str | None
    format: str
    size: int
    title: str | None
    updated_at: float
    note: str | None = Field(default=None, description="how a misnamed or damaged file was read")
    origin: str = Field(default="upload", description="`upload`, `sync:FOLDER` (relative to its sync root) or "
                        "`schedule:NAME`; a sync mirrors only the documents of its own origin")
    uploaded_by: str | None = Field(default=None, description="label of the API key that uploaded it")
    tags: list[str] = Field(default_factory=list)


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class DocumentPatch(Request):
    tags: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=32, description="the document's tags, replacing the current ones (at most 32, each 1-64 characters)")


class DocumentDeleted(BaseModel):
    kb: str
    doc_id: str
    deleted: bool = True


class FileFailure(BaseModel):
    path: str
    error: str


class FileRecovered(BaseModel):
    path: str
    note: str = Field(description="how the misnamed or damaged file was read")


class IngestResult(BaseModel):
    kb: str
    added: int
    updated: int
    unchanged: int
    deleted: int
    failed: list[FileFailure]
    recovered: list[FileRecovered] = []
    chunks: int
    seconds: float
    formats: dict[str, Any] = {}


class JobAccepted(BaseModel):
    job_id: str
    status: str
    files: list[str] = Field(default=[], description="the stored name (document source) of each upload")


class SyncRequest(Request):
    source: str = Field(min_length=1, max_length=4096, json_schema_extra={"pattern": "^/"},
                        description="an absolute path of a folder inside one of server.sync_roots")


# -- jobs --------------------------------------------------------------------------------------


class JobProgress(BaseModel):
    done: int
    total: int


class JobOut(BaseModel):
    job_id: str
    kb: str | None
    kind: str
    status: Literal["queued", "running", "succeeded", "failed", "skipped", "cancelled"]
    progress: JobProgress
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


class JobList(BaseModel):
    jobs: list[JobOut]


# -- search ------------------------------------------------------------------------------------


class FilterIn(Request):
    """Which documents to search (rag/filters.py): every condition given must hold. Unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: str | None = Field(default=None, min_length=1, max_length=1000,
                               description="a glob on the document's source path; `*` also crosses `/`")
    format: str | list[Annotated[str, Field(min_length=1, max_length=20)]] | None = Field(
        default=None, max_length=50, description='"pdf", or a list: any of them')
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, max_length=50, description="the document carries every one of them")
    modified_after: datetime | None = Field(
        default=None, description="ISO 8601 (UTC unless it says) or epoch seconds; the current version's "
        "indexing time, inclusive")
    modified_before: datetime | None = Field(default=None, description="as modified_after, exclusive")

    def to_filter(self) -> DocumentFilter | None:
        return DocumentFilter.from_json(self.model_dump(exclude_none=True))


KBNames = list[Annotated[str, Field(min_length=1, max_length=64)]]


class SearchFields(Request):
    query: str = Field(min_length=1, max_length=4000, pattern=r"\S",
                       description="at most 4,000 characters and server.max_question_tokens tokens")
    top_k: int | None = Field(default=None, ge=1, le=1000)
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    bm25_weight: float | None = Field(default=None, ge=0, le=100)
    dense_weight: float | None = Field(default=None, ge=0, le=100)
    explain: bool = Field(default=False, description="include each retriever's rank and raw score")
    filter: FilterIn | None = Field(default=None, description="search only the documents it matches")


class SearchRequest(SearchFields):
    pass


class MultiSearchRequest(SearchFields):
    kbs: KBNames = Field(min_length=1, max_length=MAX_KBS,
                        description="the KBs to search, their rankings fused by RRF; each hit names its kb")


class HitOut(BaseModel):
    chunk_id: int
    doc_id: str
    source: str
    page: int | None
    text: str
    score: float
    # Left out when absent; `page` is always there (null where the format has none), as the contract says.
    heading: str | None = Field(default=None, exclude_if=lambda value: value is None)
    explain: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)
    kb: str | None = Field(default=None, exclude_if=lambda value: value is None,
                           description="the KB it came from (searches over several KBs)")


class SearchResponse(BaseModel):
    query: str
    hits: list[HitOut]


# -- chat --------------------------------------------------------------------------------------


class Message(Request):
    role: Literal["system", "user", "assistant"]
    content: str = Field(description="at most server.max_message_tokens tokens (the last one: "
                         "server.max_question_tokens)")


class GenerationFields(Request):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    seed: int | None = None


class AnswerFields(GenerationFields):
    """What every grounded-answer request may set (the chat route, a conversation's message)."""

    stream: bool = False
    top_k: int | None = Field(default=None, ge=1, le=50, description="passages to retrieve")
    relevance_threshold: float | None = Field(default=None, ge=0, le=1)
    evidence_quotes: int | None = Field(default=None, ge=0, le=10,
                                        description="source sentences quoted after the answer (0: none)")
    filter: FilterIn | None = Field(default=None, description="answer only from the documents it matches")


class ChatRequest(AnswerFields):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    condense: bool = Field(default=True, description="rewrite a follow-up as a standalone question")
    kbs: KBNames | None = Field(default=None, max_length=MAX_KBS - 1,
                               description="more KBs to ask beside the path's, fused by RRF")


class CitationOut(BaseModel):
    n: int
    doc_id: str
    source: str
    page: int | None
    text: str
    chunk_id: int | None = None
    kb: str | None = Field(default=None, exclude_if=lambda value: not value,
                           description="the KB it came from (answers over several KBs)")


class EvidenceOut(BaseModel):
    n: int  # the source number, as in citations
    text: str  # the source sentence, verbatim


class ChatResponse(BaseModel):
    answer: str
    grounded: bool
    citations: list[CitationOut]
    evidence: list[EvidenceOut] = []
    search_query: str = ""


# -- OpenAI-compatible -------------------------------------------------------------------------


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class OpenAIChatRequest(BaseModel):
    # OpenAI clients send fields we ignore (user, logprobs, …)
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(max_length=200)
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    # extensions
    retrieval_top_k: int | None = Field(default=None, ge=1, le=50, description="kb: models only")
    filter: FilterIn | None = Field(default=None, description="kb: models only: answer from these documents")
    kbs: KBNames | None = Field(default=None, max_length=MAX_KBS,
                               description='kb: models only: more KBs to ask beside the model\'s ("kb:a+b" too)')
    conversation_id: str | None = Field(
        default=None, max_length=100,
        description="record this exchange (the last user message and the answer) in that conversation, "
        "which must be the caller's; the request stays stateless: the history is the messages sent")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class CompletionChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    sources: list[CitationOut] | None = Field(default=None, description="kb: models: the passages cited",
                                              exclude_if=lambda value: value is None)
    grounded: bool | None = Field(default=None, exclude_if=lambda value: value is None)
    message_id: int | None = Field(default=None, exclude_if=lambda value: value is None,
                                   description="with conversation_id: the stored answer's id, for feedback")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    input: str | list[str] = Field(description="a text or a list of texts (token arrays are not supported); at most "
                                   "server.max_embedding_inputs texts of server.max_embedding_tokens tokens each")
    model: str | None = Field(default=None, max_length=200)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


# -- health ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    catalog: bool
    embeddings: bool
    llm: bool
    detail: str | None = Field(default=None, description="why warm-up failed, if it did")
    warm_up_seconds: float | None = None


# -- what was indexed --------------------------------------------------------------------------


class ChunkOut(BaseModel):
    chunk_id: int
    order: int = Field(description="position in the document, from 0")
    text: str
    page: int | None
    heading: str | None
    tokens: int = Field(description="the splitter's token estimate (what bounded the chunk's size)")


class ChunkList(BaseModel):
    chunks: list[ChunkOut]


# -- conversations and feedback ------------------------------------------------------------------


class ConversationCreate(Request):
    kbs: KBNames = Field(min_length=1, max_length=MAX_KBS,
                        description="the knowledge bases to ask (several: rankings fused by RRF)")
    title: str = Field(default="", max_length=200, description="default: the first question")


class ConversationUpdate(Request):
    title: str = Field(min_length=1, max_length=200)


class ConversationOut(BaseModel):
    id: str
    owner: str = Field(description="the API key's label; \"local\" without keys")
    title: str
    kbs: list[str]
    created_at: float
    updated_at: float


class ConversationList(BaseModel):
    conversations: list[ConversationOut]


class StoredMessageOut(BaseModel):
    id: int
    role: str
    content: str
    created_at: float
    citations: list[CitationOut] | None = Field(default=None, description="answers only")
    evidence: list[EvidenceOut] | None = None
    grounded: bool | None = None
    kb: str | None = None
    rating: Literal["up", "down"] | None = Field(default=None, description="the feedback given, if any")


class ConversationDetail(ConversationOut):
    messages: list[StoredMessageOut]


class ConversationDeleted(BaseModel):
    id: str
    deleted: bool = True


class ConversationMessage(AnswerFields):
    content: str = Field(min_length=1, description="the question (at most server.max_question_tokens tokens)")


class ConversationAnswer(ChatResponse):
    message_id: int = Field(description="the answer's id, for feedback")


class FeedbackIn(Request):
    rating: Literal["up", "down"]
    comment: str = Field(default="", max_length=4000)
    expected: str | None = Field(default=None, max_length=4000,
                                 description="the right answer, if the rater knows it (an extension: "
                                 "`rag feedback export` writes it as the question's gold answer)")


class FeedbackOut(BaseModel):
    message_id: int
    rating: Literal["up", "down"]
    comment: str
