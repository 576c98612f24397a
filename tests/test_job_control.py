"""Jobs on a real server: cancel a queued and a running ingest, delete a KB while it ingests (with a second
upload queued), and an upload to one KB indexed while another KB's slow ingest runs."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import RunningServer, start_server
from job_helpers import FAST_COMMITS, note_files, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("jobs") / "home", env=FAST_COMMITS)
    running.wait_ready()  # the embedding models loaded: the timings below are of the jobs alone
    yield running
    running.stop()


def committed(server: RunningServer, kb: str) -> int:
    with sqlite3.connect(server.home / "catalog.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM documents WHERE kb=? AND status='indexed'", (kb,)).fetchone()[0])


def create_kb(base: str, name: str) -> None:
    assert requests.post(f"{base}/api/kbs", json={"name": name}, timeout=30).status_code == 201


def upload(base: str, kb: str, files: list[tuple[str, bytes]]) -> str:
    response = requests.post(f"{base}/api/kbs/{kb}/documents", timeout=120,
                             files=[("files", (name, io.BytesIO(body))) for name, body in files])
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def job(base: str, job_id: str) -> dict[str, Any]:
    return requests.get(f"{base}/api/jobs/{job_id}", timeout=10).json()  # type: ignore[no-any-return]


def ended(base: str, job_id: str) -> dict[str, Any] | None:
    found = job(base, job_id)
    return found if found["status"] not in {"queued", "running"} else None


def test_cancel_stops_a_queued_job_at_once_and_a_running_one_at_the_next_file(server: RunningServer) -> None:
    base = server.base_url
    create_kb(base, "cancelme")
    files = note_files("cancel", 40)
    running = upload(base, "cancelme", files)
    queued = upload(base, "cancelme", note_files("later", 3))  # same KB: waits in the KB's lane
    wait_until(lambda: committed(server, "cancelme") >= 3, "the ingest never committed 3 files", timeout=300)

    answer = requests.post(f"{base}/api/jobs/{queued}/cancel", timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"

    started = time.monotonic()
    answer = requests.post(f"{base}/api/jobs/{running}/cancel", timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] in {"running", "cancelled"}
    stopped = wait_until(lambda: ended(base, running), "the cancelled job never stopped", timeout=60)
    seconds = time.monotonic() - started
    assert stopped["status"] == "cancelled" and stopped["finished_at"] is not None

    kept = committed(server, "cancelme")
    time.sleep(1.0)
    assert committed(server, "cancelme") == kept  # nothing committed after the stop
    assert 3 <= kept < len(files)
    documents = requests.get(f"{base}/api/kbs/cancelme/documents", timeout=30).json()["documents"]
    assert len(documents) == kept and all(doc["source"].startswith("cancel-") for doc in documents)
    assert job(base, queued)["status"] == "cancelled" and committed(server, "cancelme") == kept  # never ran
    again = requests.post(f"{base}/api/jobs/{running}/cancel", timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    assert requests.post(f"{base}/api/jobs/nope/cancel", timeout=10).status_code == 404

    # Uploading the same 40 files again adds only what the cancelled job had not committed.
    redo_id = upload(base, "cancelme", files)
    redo = wait_until(lambda: ended(base, redo_id), "the re-upload never ended", timeout=300)
    assert redo["status"] == "succeeded"
    assert (redo["result"]["added"], redo["result"]["unchanged"]) == (len(files) - kept, kept)
    print(f"\ncancel: running job stopped {seconds:.2f}s after the request, at {stopped['progress']['done']}/40 "
          f"files; {kept} documents kept; queued job cancelled at once; re-upload added {len(files) - kept}")


class Poller:
    """Requests against a KB from another thread while it is deleted; every status code is kept."""

    def __init__(self, base: str, kb: str) -> None:
        self.base, self.kb = base, kb
        self.codes: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        base, kb = self.base, self.kb
        calls = [
            ("GET kb", lambda: requests.get(f"{base}/api/kbs/{kb}", timeout=30)),
            ("GET documents", lambda: requests.get(f"{base}/api/kbs/{kb}/documents", timeout=30)),
            ("POST search", lambda: requests.post(f"{base}/api/kbs/{kb}/search", json={"query": "note"},
                                                  timeout=60)),
            ("POST upload", lambda: requests.post(f"{base}/api/kbs/{kb}/documents", timeout=60,
                                                  files=[("files", ("during.txt", io.BytesIO(b"uploaded during")))])),
            ("GET jobs", lambda: requests.get(f"{base}/api/jobs", params={"kb": kb}, timeout=30)),
            ("GET kbs", lambda: requests.get(f"{base}/api/kbs", timeout=30)),
        ]
        while not self._stop.is_set():
            for name, call in calls:
                self.codes.append((name, call().status_code))


def test_deleting_a_kb_during_an_ingest_is_immediate_and_the_name_starts_empty(server: RunningServer) -> None:
    base = server.base_url
    create_kb(base, "doomed")
    first = upload(base, "doomed", note_files("doomed", 40))
    second = upload(base, "doomed", note_files("queued", 5))
    wait_until(lambda: committed(server, "doomed") >= 2, "the ingest never committed 2 files", timeout=300)
    assert job(base, second)["status"] == "queued"

    with Poller(base, "doomed") as poller:
        time.sleep(0.3)
        started, deleted_at = time.monotonic(), time.time()
        deleted = requests.delete(f"{base}/api/kbs/doomed", timeout=30)
        delete_s = time.monotonic() - started
        assert deleted.status_code == 200
        assert "doomed" not in [kb["name"] for kb in requests.get(f"{base}/api/kbs", timeout=30).json()["kbs"]]
        refused = requests.post(f"{base}/api/kbs/doomed/documents", timeout=30,
                                files=[("files", ("late.txt", io.BytesIO(b"too late")))])
        assert refused.status_code in {404, 409}, refused.text

        def recreated() -> bool:
            answer = requests.post(f"{base}/api/kbs", json={"name": "doomed"}, timeout=30)
            assert answer.status_code in {201, 409}, answer.text
            return answer.status_code == 201

        wait_until(recreated, "the name never became free again", timeout=60, every=0.1)
        recreate_s = time.monotonic() - started
        time.sleep(0.5)  # the poller also sees the new, empty KB
    server_errors = [(name, code) for name, code in poller.codes if code >= 500]
    assert server_errors == []
    assert len(poller.codes) > 10

    kb = requests.get(f"{base}/api/kbs/doomed", timeout=30).json()
    during = [name for name, code in poller.codes if name == "POST upload" and code == 202]
    jobs = requests.get(f"{base}/api/jobs", params={"kb": "doomed"}, timeout=30).json()["jobs"]
    assert all(found["created_at"] > deleted_at for found in jobs)  # only uploads made to the new KB
    assert len(jobs) <= len(during)
    assert job(base, first)["error"]["code"] == "job_not_found"
    assert job(base, second)["error"]["code"] == "job_not_found"
    old = [doc for doc in requests.get(f"{base}/api/kbs/doomed/documents", timeout=30).json()["documents"]
           if doc["source"] != "during.txt"]
    assert old == []
    assert kb["documents"] <= len(during)
    leftovers = sorted(p.name for p in (server.home / "uploads" / "doomed").glob("*") if p.name != "during.txt")
    assert leftovers == []
    codes = sorted({code for _, code in poller.codes})
    print(f"\ndelete: DELETE answered in {delete_s:.2f}s; same name created again after {recreate_s:.2f}s; "
          f"{len(poller.codes)} requests meanwhile, status codes {codes}")


def test_an_upload_to_one_kb_does_not_wait_for_another_kbs_slow_ingest(server: RunningServer) -> None:
    base = server.base_url
    create_kb(base, "slowkb")
    create_kb(base, "quickkb")
    slow = upload(base, "slowkb", note_files("slow", 60))
    wait_until(lambda: committed(server, "slowkb") >= 1, "the slow ingest never started", timeout=300)

    started = time.monotonic()
    quick = upload(base, "quickkb", [("lighthouse.txt", b"The lighthouse keeper repainted the tower white.")])
    done = wait_until(lambda: ended(base, quick), "the quick upload never ended", timeout=60)
    quick_s = time.monotonic() - started
    slow_now = job(base, slow)
    assert done["status"] == "succeeded" and done["result"]["added"] == 1
    assert slow_now["status"] == "running", slow_now  # the other KB's ingest is still going
    hits = requests.post(f"{base}/api/kbs/quickkb/search", json={"query": "lighthouse repainted", "top_k": 1},
                         timeout=60).json()["hits"]
    assert hits[0]["source"] == "lighthouse.txt"
    print(f"\ntwo KBs: upload to quickkb indexed in {quick_s:.2f}s while slowkb's ingest was at "
          f"{slow_now['progress']['done']}/60 files")
    requests.post(f"{base}/api/jobs/{slow}/cancel", timeout=10)
    wait_until(lambda: ended(base, slow), "the slow job never stopped", timeout=60)


def test_the_job_store_forgets_a_kb_purges_old_rows_and_names_pending_uploads(tmp_path: Path) -> None:
    """A KB's job rows go with it (its runners, in any process, then stop); ended rows are purged by age."""
    from rag.store.catalog import Catalog
    from rag.store.jobs import JobStore

    store = JobStore(Catalog(tmp_path / "catalog.sqlite"))
    store.create("a", "ingest", "kb1", payload={"files": [["/x/a.txt", "a.txt"]]})
    store.create("b", "ingest", "kb2")
    assert store.pending_files("kb1") == {"/x/a.txt"}
    assert store.forget_kb("kb1") == ["a"]
    assert store.cancel_requested("a") and not store.cancel_requested("b")
    store.finish("b", "succeeded", result={"added": 1})
    assert store.purge_finished(3600) == 0 and store.purge_finished(-1) == 1
    assert store.list() == []
