"""Documents of a KB: upload (as a background job), list, get, delete, and folder sync."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from rag.api.auth import Principal, Role, requires
from rag.api.background import submit_ingest_job
from rag.api.schemas import DocumentDeleted, DocumentList, DocumentOut, IngestResult, JobAccepted, SyncRequest
from rag.api.state import ApiState, api_state
from rag.api.uploads import safe_relative_name
from rag.errors import InvalidInput, PayloadTooLarge
from rag.indexing import IngestReport, ProgressCallback
from rag.store.catalog import DocumentInfo

router = APIRouter(prefix="/api/kbs/{kb}", tags=["documents"])


def document_out(doc: DocumentInfo) -> DocumentOut:
    return DocumentOut(**doc.to_json())


@router.get("/documents", response_model=DocumentList)
def list_documents(kb: str, state: ApiState = Depends(api_state),
                   _: Principal = Depends(requires(Role.reader))) -> DocumentList:
    return DocumentList(documents=[document_out(doc) for doc in state.service.list_documents(kb)])


@router.get("/documents/{doc_id}", response_model=DocumentOut)
def get_document(kb: str, doc_id: str, state: ApiState = Depends(api_state),
                 _: Principal = Depends(requires(Role.reader))) -> DocumentOut:
    return document_out(state.service.get_document(kb, doc_id))


@router.delete("/documents/{doc_id}", response_model=DocumentDeleted)
def delete_document(kb: str, doc_id: str, state: ApiState = Depends(api_state),
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
    kb: str,
    files: list[UploadFile] = File(description="one or more files (field name 'files')"),
    wait: bool = Query(False, description="ingest before answering (201 with the report) instead of a job"),
    state: ApiState = Depends(api_state),
    _: Principal = Depends(requires(Role.writer)),
) -> JobAccepted | JSONResponse:
    await run_in_threadpool(state.service.get_kb, kb)
    max_file = int(state.settings.server.max_file_mb * 1024 * 1024)
    names: list[str] = []
    for upload in files:
        name = safe_relative_name(upload.filename)
        if upload.size is not None and upload.size > max_file:
            raise PayloadTooLarge(f"file '{name}' is larger than the limit of {state.settings.server.max_file_mb:g} MB")
        if name in names:
            raise InvalidInput(f"file '{name}' is given twice in one upload")
        names.append(name)
    stored: list[tuple[Path, str]] = []
    for upload, name in zip(files, names, strict=True):
        stored.append((await run_in_threadpool(state.uploads.save, kb, name, upload.file), name))
        await upload.close()

    def run(progress: ProgressCallback | None) -> IngestReport:
        return state.service.ingest_files(kb, stored, progress)

    if wait:
        report = await run_in_threadpool(run, None)
        return JSONResponse(IngestResult(**report.to_json()).model_dump(), status_code=status.HTTP_201_CREATED)
    job_id = submit_ingest_job(state, "ingest", kb, run, total=len(stored))
    return JobAccepted(job_id=job_id, status=state.jobs.get(job_id)["status"], files=names)


@router.post("/sync", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def sync_folder(kb: str, body: SyncRequest, state: ApiState = Depends(api_state),
                _: Principal = Depends(requires(Role.writer))) -> JobAccepted:
    """Mirror a server-side folder into the KB: add new files, re-index changed ones, delete removed ones."""
    state.service.get_kb(kb)
    folder = Path(body.source).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidInput(f"source is not a folder on the server: {body.source}")
    job_id = submit_ingest_job(state, "sync", kb, lambda progress: state.service.sync(kb, folder, progress),
                               skip_if_active=True)
    return JobAccepted(job_id=job_id, status=state.jobs.get(job_id)["status"])
