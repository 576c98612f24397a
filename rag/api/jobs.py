"""Background jobs (ingest, sync): status, progress and result; cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from rag.api.audit import record
from rag.api.auth import Principal, Role, requires
from rag.api.schemas import ErrorResponse, JobList, JobOut
from rag.api.state import ApiState, api_state
from rag.errors import JobNotFound

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def _visible_job(state: ApiState, job_id: str, who: Principal) -> JobOut:
    job = state.jobs.get(job_id)
    if job["kb"] is not None and not who.may_use(job["kb"]):
        raise JobNotFound(f"job '{job_id}' does not exist")  # do not reveal other KBs' jobs
    return JobOut(**job)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, state: ApiState = Depends(api_state),
            who: Principal = Depends(requires(Role.reader))) -> JobOut:
    return _visible_job(state, job_id, who)


@router.post("/{job_id}/cancel", response_model=JobOut,
             responses={409: {"model": ErrorResponse, "description": "the job has already ended (`job_finished`)"}})
def cancel_job(job_id: str, request: Request, state: ApiState = Depends(api_state),
               who: Principal = Depends(requires(Role.writer))) -> JobOut:
    """Stop a queued job now, a running one at its next file (writer keys of the job's KB; admin for jobs of
    no KB). What a running job had committed stays; the rest is rolled back. The answer is the job as it
    stands: `cancelled` at once when it was queued; a running one reads `cancelled` once it has stopped."""
    job = _visible_job(state, job_id, who)
    record(request, kb=job.kb or "-")
    who.check(Role.writer if job.kb is not None else Role.admin, job.kb)
    return JobOut(**state.jobs.cancel(job_id))


@router.get("", response_model=JobList)
def list_jobs(kb: str | None = Query(None, description="only this KB's jobs"),
              limit: int = Query(50, ge=1, le=500), state: ApiState = Depends(api_state),
              who: Principal = Depends(requires(Role.reader))) -> JobList:
    if kb is not None:
        who.check(Role.reader, kb)
    jobs = [JobOut(**job) for job in state.jobs.list(kb, limit) if job["kb"] is None or who.may_use(job["kb"])]
    return JobList(jobs=jobs)
