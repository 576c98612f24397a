"""A typed Python client for the REST API (sync ``RagClient`` and async ``AsyncRagClient``, over httpx).

Results are the API's own pydantic models (``rag.api.schemas``), so a field the server adds shows up
here without a second definition to keep in step. Errors come back as ``RagApiError`` carrying the
server's ``{"error": {"code", "message"}}``.

    client = RagClient("http://127.0.0.1:8000", api_key="k3y")
    client.create_kb("handbook")
    job = client.upload("handbook", ["vacation.txt"])
    client.wait_for_job(job.job_id)
    for hit in client.search("handbook", "how many vacation days?").hits:
        print(hit.score, hit.source, hit.text)
    stream = client.chat_stream("handbook", "How many vacation days do I get?")
    for token in stream:
        print(token, end="")
    print(stream.response.citations)
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from pydantic import BaseModel

from rag.api.schemas import (
    ChatResponse,
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    HitOut,
    IngestResult,
    JobAccepted,
    JobOut,
    KBDeleted,
    KBList,
    KBOut,
    SearchResponse,
)

__all__ = ["AsyncRagClient", "ChatStream", "AsyncChatStream", "RagApiError", "RagClient", "UploadFile"]

M = TypeVar("M", bound=BaseModel)

#: ``progress(done, total)``: bytes sent for an upload, files done for a job.
Progress = Callable[[int, int], None]
#: A file to upload: a path, or ``(name, bytes)``, or ``(name, binary file object)``.
UploadFile = str | Path | tuple[str, bytes] | tuple[str, IO[bytes]]

_FINISHED = {"succeeded", "failed", "skipped", "cancelled"}


class RagApiError(Exception):
    """The server answered with an error status; ``code`` is the API's stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    raise RagApiError(response.status_code, str(error.get("code", "http_error")),
                      str(error.get("message", response.text[:500] or response.reason_phrase)),
                      error.get("request_id"))


def _with_nulls(model: type[BaseModel], data: Any) -> Any:
    """Put back the ``null`` fields that routes answering with ``response_model_exclude_none`` leave out
    (``page`` of a hit from a format without pages), so the API's own models validate the answer."""
    if not isinstance(data, dict):
        return data
    filled = dict(data)
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation)
        if name not in filled:
            if info.is_required() and type(None) in args:
                filled[name] = None
            continue
        for arg in (info.annotation, *args):
            inner = typing.get_args(arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                filled[name] = _with_nulls(arg, filled[name])
            elif inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel) \
                    and isinstance(filled[name], list):
                filled[name] = [_with_nulls(inner[0], item) for item in filled[name]]
    return filled


def _validate(model: type[M], data: Any) -> M:
    return model.model_validate(_with_nulls(model, data))


def _parse(response: httpx.Response, model: type[M]) -> M:
    _raise_for_error(response)
    return _validate(model, response.json())


def _messages(question_or_messages: str | Sequence[dict[str, str]]) -> list[dict[str, str]]:
    if isinstance(question_or_messages, str):
        return [{"role": "user", "content": question_or_messages}]
    return [dict(message) for message in question_or_messages]


def _search_body(query: str, top_k: int | None, mode: str, filter: dict[str, Any] | None,
                 extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "mode": mode, **extra}
    if top_k is not None:
        body["top_k"] = top_k
    if filter:
        body["filter"] = filter
    return body


def _chat_body(messages: str | Sequence[dict[str, str]], stream: bool, extra: dict[str, Any]) -> dict[str, Any]:
    return {"messages": _messages(messages), "stream": stream, **extra}


class _CountingReader:
    """A binary file wrapper that reports how many bytes the upload has read so far."""

    def __init__(self, file: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._file = file
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._on_read(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


@dataclass
class _Upload:
    """The multipart ``files`` field of an upload, with byte counting for the progress callback."""

    files: list[tuple[str, tuple[str, Any, str]]]
    total: int
    opened: list[IO[bytes]] = field(default_factory=list)

    @classmethod
    def build(cls, items: Iterable[UploadFile], progress: Progress | None) -> _Upload:
        upload = cls(files=[], total=0)
        sent = 0

        def on_read(count: int) -> None:
            nonlocal sent
            sent += count
            if progress is not None and count:
                progress(min(sent, upload.total), upload.total)

        for item in items:
            name, handle = upload._open(item)
            handle.seek(0, 2)
            upload.total += handle.tell()
            handle.seek(0)
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            upload.files.append(("files", (name, _CountingReader(handle, on_read), mime)))
        if not upload.files:
            raise ValueError("upload: give at least one file")
        return upload

    def _open(self, item: UploadFile) -> tuple[str, IO[bytes]]:
        if isinstance(item, (str, Path)):
            path = Path(item)
            handle = path.open("rb")
            self.opened.append(handle)
            return path.name, handle
        name, content = item
        if isinstance(content, bytes):
            import io

            return name, io.BytesIO(content)
        return name, content

    def close(self) -> None:
        for handle in self.opened:
            handle.close()


def _upload_result(response: httpx.Response) -> JobAccepted | IngestResult:
    _raise_for_error(response)
    data = response.json()
    return _validate(IngestResult, data) if response.status_code == 201 else _validate(JobAccepted, data)


class _StreamState:
    """What a chat stream has seen so far: the retrieved sources and, at the end, the answer."""

    def __init__(self) -> None:
        self.sources: list[HitOut] = []
        self.response: ChatResponse | None = None

    def token_of(self, line: str) -> str | None:
        """One SSE line in, the token text out (``None`` for events that are not tokens)."""
        if not line.startswith("data:"):
            return None
        payload = line[5:].strip()
        if not payload or payload == "[DONE]":
            return None
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "token":
            return str(event.get("text", ""))
        if kind == "sources":
            self.sources = [_validate(HitOut, hit) for hit in event.get("sources", [])]
        elif kind == "done":
            self.response = _validate(ChatResponse, event)
        elif kind == "error" or "error" in event:
            error = event.get("error", {})
            raise RagApiError(200, str(error.get("code", "stream_error")), str(error.get("message", "")),
                              error.get("request_id"))
        return None


class _StreamResult:
    """What a finished stream, sync or async, tells besides its tokens."""

    _state: _StreamState

    @property
    def sources(self) -> list[HitOut]:
        return self._state.sources

    @property
    def response(self) -> ChatResponse:
        if self._state.response is None:
            raise RuntimeError("the stream has not finished: iterate over it first")
        return self._state.response


class ChatStream(_StreamResult, Iterator[str]):
    """Iterates over the answer's tokens; then ``sources`` (retrieved hits) and ``response`` (the
    final answer, grounded flag and citations) are set. Use as a context manager to close early."""

    def __init__(self, client: httpx.Client, url: str, body: dict[str, Any]) -> None:
        self._state = _StreamState()
        self._context = client.stream("POST", url, json=body)
        self._response = self._context.__enter__()
        if not self._response.is_success:
            self._response.read()
            self.close()
            _raise_for_error(self._response)
        self._lines = self._response.iter_lines()

    def __next__(self) -> str:
        for line in self._lines:
            token = self._state.token_of(line)
            if token is not None:
                return token
        self.close()
        raise StopIteration

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncChatStream(_StreamResult, AsyncIterator[str]):
    """The async twin of ``ChatStream``: ``async for token in stream``; then ``sources`` and ``response``."""

    def __init__(self, client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> None:
        self._state = _StreamState()
        self._client, self._url, self._body = client, url, body
        self._context: Any = None
        self._lines: AsyncIterator[str] | None = None

    async def _open(self) -> AsyncIterator[str]:
        self._context = self._client.stream("POST", self._url, json=self._body)
        response = await self._context.__aenter__()
        if not response.is_success:
            await response.aread()
            await self.aclose()
            _raise_for_error(response)
        return response.aiter_lines()  # type: ignore[no-any-return]

    async def __anext__(self) -> str:
        if self._lines is None:
            self._lines = await self._open()
        async for line in self._lines:
            token = self._state.token_of(line)
            if token is not None:
                return token
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            await context.__aexit__(None, None, None)

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class RagClient:
    """Sync client. ``base_url`` is the server's root (``http://127.0.0.1:8000``), not ``/api``."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=_headers(api_key), timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RagClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- knowledge bases ------------------------------------------------------------------------
    def list_kbs(self) -> list[KBOut]:
        return _parse(self._http.get("/api/kbs"), KBList).kbs

    def create_kb(self, name: str, description: str = "") -> KBOut:
        return _parse(self._http.post("/api/kbs", json={"name": name, "description": description}), KBOut)

    def get_kb(self, name: str) -> KBOut:
        return _parse(self._http.get(f"/api/kbs/{name}"), KBOut)

    def delete_kb(self, name: str) -> KBDeleted:
        return _parse(self._http.delete(f"/api/kbs/{name}"), KBDeleted)

    # -- documents ------------------------------------------------------------------------------
    def upload(self, kb: str, files: Iterable[UploadFile], progress: Progress | None = None,
               wait: bool = False) -> JobAccepted | IngestResult:
        """Upload files: a ``JobAccepted`` to wait for, or with ``wait=True`` the finished ``IngestResult``.
        ``progress(bytes_sent, bytes_total)`` is called as the files are sent."""
        upload = _Upload.build(files, progress)
        try:
            response = self._http.post(f"/api/kbs/{kb}/documents", files=upload.files,
                                       params={"wait": "true"} if wait else None)
        finally:
            upload.close()
        return _upload_result(response)

    def list_documents(self, kb: str) -> list[DocumentOut]:
        return _parse(self._http.get(f"/api/kbs/{kb}/documents"), DocumentList).documents

    def get_document(self, kb: str, doc_id: str) -> DocumentOut:
        return _parse(self._http.get(f"/api/kbs/{kb}/documents/{doc_id}"), DocumentOut)

    def delete_document(self, kb: str, doc_id: str) -> DocumentDeleted:
        return _parse(self._http.delete(f"/api/kbs/{kb}/documents/{doc_id}"), DocumentDeleted)

    def document_chunks(self, kb: str, doc_id: str) -> list[dict[str, Any]]:
        """The document's chunks in order: ``{"chunk_id", "order", "text", "page", "heading", "tokens"}``."""
        response = self._http.get(f"/api/kbs/{kb}/documents/{doc_id}/chunks")
        _raise_for_error(response)
        return list(response.json()["chunks"])

    # -- jobs -----------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> JobOut:
        return _parse(self._http.get(f"/api/jobs/{job_id}"), JobOut)

    def wait_for_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.25,
                     progress: Progress | None = None) -> JobOut:
        """Poll until the job has finished (succeeded, failed or skipped); ``TimeoutError`` after ``timeout``.
        ``progress(files_done, files_total)`` is called when the job's progress changes."""
        deadline = time.monotonic() + timeout
        last: tuple[int, int] | None = None
        while True:
            job = self.get_job(job_id)
            seen = (job.progress.done, job.progress.total)
            if progress is not None and seen != last:
                progress(*seen)
                last = seen
            if job.status in _FINISHED:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
            time.sleep(poll)

    # -- search and chat ------------------------------------------------------------------------
    def search(self, kb: str, query: str, top_k: int | None = None, mode: str = "hybrid",
               filter: dict[str, Any] | None = None, **options: Any) -> SearchResponse:
        """Hybrid (or ``mode="bm25"`` / ``"dense"``) search; ``options``: ``bm25_weight``, ``dense_weight``,
        ``explain``; ``filter`` only where the server supports search filters."""
        body = _search_body(query, top_k, mode, filter, options)
        return _parse(self._http.post(f"/api/kbs/{kb}/search", json=body), SearchResponse)

    def search_many(self, kbs: Sequence[str], query: str, top_k: int | None = None, mode: str = "hybrid",
                    filter: dict[str, Any] | None = None, **options: Any) -> SearchResponse:
        """One ranking over several KBs (``POST /api/search``, fused by RRF); each hit names its ``kb``."""
        body = _search_body(query, top_k, mode, filter, {"kbs": list(kbs), **options})
        return _parse(self._http.post("/api/search", json=body), SearchResponse)

    def chat(self, kb: str, messages: str | Sequence[dict[str, str]], **options: Any) -> ChatResponse:
        """A grounded answer: a question, or a list of ``{"role", "content"}`` messages."""
        return _parse(self._http.post(f"/api/kbs/{kb}/chat", json=_chat_body(messages, False, options)),
                      ChatResponse)

    def chat_stream(self, kb: str, messages: str | Sequence[dict[str, str]], **options: Any) -> ChatStream:
        """The answer's tokens as they are generated; afterwards ``.sources`` and ``.response``."""
        return ChatStream(self._http, f"/api/kbs/{kb}/chat", _chat_body(messages, True, options))


class AsyncRagClient:
    """Async client with the same methods as ``RagClient`` (awaitable; ``chat_stream`` is ``async for``)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=_headers(api_key), timeout=timeout,
                                       transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncRagClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def list_kbs(self) -> list[KBOut]:
        return _parse(await self._http.get("/api/kbs"), KBList).kbs

    async def create_kb(self, name: str, description: str = "") -> KBOut:
        return _parse(await self._http.post("/api/kbs", json={"name": name, "description": description}), KBOut)

    async def get_kb(self, name: str) -> KBOut:
        return _parse(await self._http.get(f"/api/kbs/{name}"), KBOut)

    async def delete_kb(self, name: str) -> KBDeleted:
        return _parse(await self._http.delete(f"/api/kbs/{name}"), KBDeleted)

    async def upload(self, kb: str, files: Iterable[UploadFile], progress: Progress | None = None,
                     wait: bool = False) -> JobAccepted | IngestResult:
        upload = _Upload.build(files, progress)
        try:
            # httpx sends multipart bodies from an async client by reading the files synchronously.
            response = await self._http.post(f"/api/kbs/{kb}/documents", files=upload.files,
                                             params={"wait": "true"} if wait else None)
        finally:
            upload.close()
        return _upload_result(response)

    async def list_documents(self, kb: str) -> list[DocumentOut]:
        return _parse(await self._http.get(f"/api/kbs/{kb}/documents"), DocumentList).documents

    async def get_document(self, kb: str, doc_id: str) -> DocumentOut:
        return _parse(await self._http.get(f"/api/kbs/{kb}/documents/{doc_id}"), DocumentOut)

    async def delete_document(self, kb: str, doc_id: str) -> DocumentDeleted:
        return _parse(await self._http.delete(f"/api/kbs/{kb}/documents/{doc_id}"), DocumentDeleted)

    async def document_chunks(self, kb: str, doc_id: str) -> list[dict[str, Any]]:
        response = await self._http.get(f"/api/kbs/{kb}/documents/{doc_id}/chunks")
        _raise_for_error(response)
        return list(response.json()["chunks"])

    async def get_job(self, job_id: str) -> JobOut:
        return _parse(await self._http.get(f"/api/jobs/{job_id}"), JobOut)

    async def wait_for_job(self, job_id: str, timeout: float = 600.0, poll: float = 0.25,
                           progress: Progress | None = None) -> JobOut:
        deadline = time.monotonic() + timeout
        last: tuple[int, int] | None = None
        while True:
            job = await self.get_job(job_id)
            seen = (job.progress.done, job.progress.total)
            if progress is not None and seen != last:
                progress(*seen)
                last = seen
            if job.status in _FINISHED:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
            await asyncio.sleep(poll)

    async def search(self, kb: str, query: str, top_k: int | None = None, mode: str = "hybrid",
                     filter: dict[str, Any] | None = None, **options: Any) -> SearchResponse:
        body = _search_body(query, top_k, mode, filter, options)
        return _parse(await self._http.post(f"/api/kbs/{kb}/search", json=body), SearchResponse)

    async def search_many(self, kbs: Sequence[str], query: str, top_k: int | None = None, mode: str = "hybrid",
                          filter: dict[str, Any] | None = None, **options: Any) -> SearchResponse:
        body = _search_body(query, top_k, mode, filter, {"kbs": list(kbs), **options})
        return _parse(await self._http.post("/api/search", json=body), SearchResponse)

    async def chat(self, kb: str, messages: str | Sequence[dict[str, str]], **options: Any) -> ChatResponse:
        return _parse(await self._http.post(f"/api/kbs/{kb}/chat", json=_chat_body(messages, False, options)),
                      ChatResponse)

    def chat_stream(self, kb: str, messages: str | Sequence[dict[str, str]], **options: Any) -> AsyncChatStream:
        return AsyncChatStream(self._http, f"/api/kbs/{kb}/chat", _chat_body(messages, True, options))
