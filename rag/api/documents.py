"""Documents of a KB: upload (as a background job), list, get, delete, and folder sync."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from ingest.language import estimate_tokens
from rag.api.audit import record
from rag.api.auth import Principal, Role, requires
from rag.api.background import submit_sync_job, submit_upload_job
from rag.api.schemas import (
    ChunkList,
    ChunkOut,
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    DocumentPatch,
    ErrorResponse,
    IngestResult,
    JobAccepted,
    KBName,
    SyncRequest,
)
from rag.api.state import ApiState, api_state
from rag.errors import InvalidInput, PayloadTooLarge
from rag.indexing import IngestReport, ProgressCallback
from rag.store.catalog import DocumentInfo
from rag.uploads import safe_relative_name

router = APIRouter(prefix="/api/kbs/{kb}", tags=["documents"])


def document_out(doc: DocumentInfo) -> DocumentOut:
    return DocumentOut(**doc.to_json())


@router.get("/documents", response_model=DocumentList)
def list_documents(kb: KBName, state: ApiState = Depends(api_state),
                   origin: str | None = Query(None, max_length=4200, description="only documents of this origin: "
                                              "`upload`, `sync:FOLDER` or `schedule:NAME`"),
                   _: Principal = Depends(requires(Role.reader))) -> DocumentList:
    return DocumentList(documents=[document_out(doc) for doc in state.service.list_documents(kb, origin)])


@router.get("/documents/{doc_id}", response_model=DocumentOut)
def get_document(kb: KBName, doc_id: str, state: ApiState = Depends(api_state),
                 _: Principal = Depends(requires(Role.reader))) -> DocumentOut:
    return document_out(state.service.get_document(kb, doc_id))


@router.patch("/documents/{doc_id}", response_model=DocumentOut)
def update_document(kb: KBName, doc_id: str, body: DocumentPatch, request: Request,
                    state: ApiState = Depends(api_state),
                    _: Principal = Depends(requires(Role.writer))) -> DocumentOut:
    """Replace the document's tags (searches and chats can filter by them)."""
    record(request, doc_id=doc_id, tags=len(body.tags))
    return document_out(state.service.set_tags(kb, doc_id, body.tags))


def parse_tags(text: str | None) -> list[str] | None:
    """The upload form's ``tags``: a JSON list of strings or comma-separated; absent: keep current tags."""
    if text is None:
        return None
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise InvalidInput("tags: not a valid JSON list of strings") from None
        if not isinstance(value, list):
            raise InvalidInput("tags: give a JSON list of strings or comma-separated tags")
        return value
    return [part for part in text.split(",") if part.strip()]


@router.get("/documents/{doc_id}/chunks", response_model=ChunkList)
def document_chunks(kb: KBName, doc_id: str, state: ApiState = Depends(api_state),
                    _: Principal = Depends(requires(Role.reader))) -> ChunkList:
    """The document's chunks as searches see them now, in document order."""
    return ChunkList(chunks=[ChunkOut(chunk_id=row.id, order=row.ordinal, text=row.text, page=row.page,
                                      heading=row.heading, tokens=estimate_tokens(row.text))
                             for row in state.service.document_chunks(kb, doc_id)])


@router.get("/documents/{doc_id}/file", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "the uploaded file"},
                       404: {"model": ErrorResponse, "description": "no such document, or its original "
                             "is not kept (only uploads are: `original_not_kept`)"}})
def document_file(kb: KBName, doc_id: str, state: ApiState = Depends(api_state),
                  _: Principal = Depends(requires(Role.reader))) -> FileResponse:
    """The stored original of an uploaded document, as an attachment (never rendered inline)."""
    doc = state.service.get_document(kb, doc_id)
    path = state.service.document_original(kb, doc_id)
    return FileResponse(path, media_type="application/octet-stream", filename=doc.source.rsplit("/", 1)[-1],
                        content_disposition_type="attachment")


@router.delete("/documents/{doc_id}", response_model=DocumentDeleted)
def delete_document(kb: KBName, doc_id: str, state: ApiState = Depends(api_state),
                    _: Principal = Depends(requires(Role.writer))) -> DocumentDeleted:
    """Returns once a new generation without the document is committed: searches no longer see it."""
    state.service.delete_document(kb, doc_id)
    return DocumentDeleted(kb=kb, doc_id=doc_id)


@router.post(
    "/documents",
    status_code=status.HTTP_202_ACCEPTED,
    responses={201: {"model": IngestResult, "description": "with ?wait=true: the finished ingest"}},
    response_model=JobAccepted,
)
async def upload_documents(
    kb: KBName,
    request: Request,
    files: list[UploadFile] = File(description="one or more files (field name 'files')"),
    wait: bool = Query(False, description="ingest before answering (201 with the report) instead of a job"),
    tags: str | None = Form(None, max_length=4096, description="tags for every file's document: a JSON list of "
                            "strings or comma-separated (absent: a re-uploaded document keeps its tags)"),
    state: ApiState = Depends(api_state),
    who: Principal = Depends(requires(Role.writer)),
) -> JobAccepted | JSONResponse:
    await run_in_threadpool(state.service.get_kb, kb)
    tag_list = parse_tags(tags)
    max_file = int(state.settings.server.max_file_mb * 1024 * 1024)
    for upload in files:
        if upload.size is not None and upload.size > max_file:
            raise PayloadTooLarge(f"file '{safe_relative_name(upload.filename)}' is larger than the limit of "
                                  f"{state.settings.server.max_file_mb:g} MB")
    sizes = [upload.size for upload in files]
    size = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
    record(request, files=len(files))
    try:  # names and quota checked, then all of the upload's files are stored, or none
        stored = await run_in_threadpool(state.service.store_uploads, kb,
                                         [(upload.filename or "", upload.file) for upload in files], size)
    finally:
        for upload in files:
            await upload.close()
    names = [name for _, name in stored]

    def run(progress: ProgressCallback | None) -> IngestReport:
        return state.service.ingest_files(kb, stored, progress, uploaded_by=who.name, tags=tag_list)

    if wait:
        report = await run_in_threadpool(run, None)
        return JSONResponse(IngestResult(**report.to_json()).model_dump(), status_code=status.HTTP_201_CREATED)
    job_id = submit_upload_job(state, kb, stored, who=who, uploaded_by=who.name, tags=tag_list)
    record(request, job_id=job_id)
    return JobAccepted(job_id=job_id, status=state.jobs.get(job_id)["status"], files=names)


@router.post("/sync", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted,
             responses={403: {"model": ErrorResponse, "description": "not an admin key, or the folder is not "
                              "inside server.sync_roots (one answer whether or not it exists)"}})
def sync_folder(kb: KBName, body: SyncRequest, request: Request, state: ApiState = Depends(api_state),
                who: Principal = Depends(requires(Role.admin))) -> JobAccepted:
    """Mirror a server folder inside `server.sync_roots` into the KB (admin keys only): add new files,
    re-index changed ones, delete removed ones. Files whose real path leaves the root are skipped and reported."""
    state.service.get_kb(kb)
    folder, root = state.service.check_sync_source(body.source)
    record(request, source=str(folder))
    job_id = submit_sync_job(state, kb, folder, root, who=who)
    record(request, job_id=job_id)
    return JobAccepted(job_id=job_id, status=state.jobs.get(job_id)["status"])
