"""Background jobs (ingest, sync): status, progress and result."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from rag.api.auth import Principal, Role, requires
from rag.api.schemas import JobList, JobOut
from rag.api.state import ApiState, api_state
from rag.errors import JobNotFound

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, state: ApiState = Depends(api_state),
            who: Principal = Depends(requires(Role.reader))) -> JobOut:
    job = state.jobs.get(job_id)
    if job["kb"] is not None and not who.may_use(job["kb"]):
        raise JobNotFound(f"job '{job_id}' does not exist")  # do not reveal other KBs' jobs
    return JobOut(**job)


@router.get("", response_model=JobList)
def list_jobs(kb: str | None = Query(None, description="only this KB's jobs"),
              limit: int = Query(50, ge=1, le=500), state: ApiState = Depends(api_state),
              who: Principal = Depends(requires(Role.reader))) -> JobList:
    if kb is not None:
        who.check(Role.reader, kb)
    jobs = [JobOut(**job) for job in state.jobs.list(kb, limit) if job["kb"] is None or who.may_use(job["kb"])]
    return JobList(jobs=jobs)
