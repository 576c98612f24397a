"""Knowledge bases: create, list, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from rag.api.audit import record
from rag.api.auth import Principal, Role, requires
from rag.api.schemas import KBCreate, KBDeleted, KBList, KBName, KBOut
from rag.api.state import ApiState, api_state
from rag.store.catalog import KBInfo

router = APIRouter(prefix="/api/kbs", tags=["knowledge bases"])

# A KB without a running job is removed in milliseconds, one with a running job once that job reaches its
# next file: mostly well within this; past it the DELETE answers anyway and the removal goes on.
DELETE_WAIT_S = 2.0


def kb_out(info: KBInfo) -> KBOut:
    return KBOut(name=info.name, description=info.description, documents=info.documents, chunks=info.chunks,
                 generation=info.generation, created_at=info.created_at)


@router.get("", response_model=KBList)
def list_kbs(state: ApiState = Depends(api_state), who: Principal = Depends(requires(Role.reader))) -> KBList:
    return KBList(kbs=[kb_out(kb) for kb in state.service.list_kbs() if who.may_use(kb.name)])


@router.post("", response_model=KBOut, status_code=status.HTTP_201_CREATED)
def create_kb(body: KBCreate, request: Request, state: ApiState = Depends(api_state),
              who: Principal = Depends(requires(Role.admin))) -> KBOut:
    record(request, kb=body.name)
    who.check(Role.admin, body.name)
    return kb_out(state.service.create_kb(body.name, body.description))


@router.get("/{kb}", response_model=KBOut)
def get_kb(kb: KBName, state: ApiState = Depends(api_state), _: Principal = Depends(requires(Role.reader))) -> KBOut:
    return kb_out(state.service.get_kb(kb))


@router.delete("/{kb}", response_model=KBDeleted)
def delete_kb(kb: KBName, state: ApiState = Depends(api_state),
              _: Principal = Depends(requires(Role.admin))) -> KBDeleted:
    """Immediate: from now on the KB is gone from the list and refused (409 `kb_deleting` until its data is
    removed in the background, then 404); its queued and running jobs are cancelled (a running one stops at
    its next file). A new KB of the same name can be created once the removal ends, and starts empty.
    The answer waits up to DELETE_WAIT_S for the removal, so usually the KB is already fully gone."""
    state.service.delete_kb(kb, wait=False)
    state.service.deletions.join(kb, DELETE_WAIT_S)
    return KBDeleted(name=kb)
