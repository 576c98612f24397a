"""Document origins over the real server: a sync mirrors only its own folder's documents, never uploads
or another folder's; tags set on upload and by PATCH; the KB quota answers 413 with the figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.api_server import RunningServer, start_server, wait_for_job

QUOTA_MB = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("origins")
    (root / "shares").mkdir()
    running = start_server(root / "home", env={"RAG_SERVER__SYNC_ROOTS": json.dumps([str(root / "shares")]),
                                               "RAG_SERVER__MAX_KB_MB": str(QUOTA_MB)}, timeout=400)
    try:
        yield running
    finally:
        running.stop()


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _sync(server: RunningServer, kb: str, folder: Path) -> dict[str, object]:
    response = requests.post(f"{server.base_url}/api/kbs/{kb}/sync", json={"source": str(folder)}, timeout=30)
    assert response.status_code == 202, response.text
    job = wait_for_job(server.base_url, response.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job["result"]  # type: ignore[return-value]


def _documents(server: RunningServer, kb: str, origin: str | None = None) -> list[dict[str, object]]:
    params = {"origin": origin} if origin else None
    response = requests.get(f"{server.base_url}/api/kbs/{kb}/documents", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["documents"]  # type: ignore[no-any-return]


def test_sync_keeps_uploads_and_other_folders(server: RunningServer) -> None:
    base = server.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "mixed"}, timeout=30).status_code == 201
    uploads = [("files", (f"upload-{i}.md", f"# Upload {i}\n\nUploaded note number {i} about lanterns.".encode(),
                          "text/markdown")) for i in range(3)]
    response = requests.post(f"{base}/api/kbs/mixed/documents", params={"wait": "true"}, files=uploads,
                             data={"tags": '["manual", "q3"]'}, timeout=300)
    assert response.status_code == 201, response.text
    assert response.json()["added"] == 3

    shares = server.home.parent / "shares"
    first, second = shares / "team-a", shares / "team-b"
    _write(first, {"a1.md": "Alpha one about rivers.", "a2.md": "Alpha two about hills.",
                   "sub/a3.md": "Alpha three about lakes."})
    report = _sync(server, "mixed", first)
    assert (report["added"], report["deleted"], report["failed"]) == (3, 0, [])

    # Change the first folder: one edited, one removed, one added; re-sync it.
    (first / "a1.md").write_text("Alpha one, now about waterfalls.", encoding="utf-8")
    (first / "a2.md").unlink()
    _write(first, {"a4.md": "Alpha four about deserts."})
    report = _sync(server, "mixed", first)
    assert (report["added"], report["updated"], report["unchanged"], report["deleted"]) == (1, 1, 1, 1)

    # A second folder, with one name that is already an upload: it is refused, nothing else is touched.
    _write(second, {"b1.md": "Beta one about forests.", "b2.md": "Beta two about caves.",
                    "upload-0.md": "A different file with an upload's name."})
    report = _sync(server, "mixed", second)
    assert (report["added"], report["deleted"]) == (2, 0)
    assert [f["path"] for f in report["failed"]] == ["upload-0.md"]  # type: ignore[index]
    assert "already a document of origin 'upload'" in report["failed"][0]["error"]  # type: ignore[index]

    documents = _documents(server, "mixed")
    by_origin: dict[str, list[str]] = {}
    for doc in documents:
        by_origin.setdefault(str(doc["origin"]), []).append(str(doc["source"]))
    assert {origin: sorted(sources) for origin, sources in by_origin.items()} == {
        "upload": ["upload-0.md", "upload-1.md", "upload-2.md"],
        "sync:team-a": ["a1.md", "a4.md", "sub/a3.md"],
        "sync:team-b": ["b1.md", "b2.md"],
    }
    assert len(documents) == 8
    uploaded = _documents(server, "mixed", origin="upload")
    assert [doc["tags"] for doc in uploaded] == [["manual", "q3"]] * 3
    assert {doc["uploaded_by"] for doc in uploaded} == {"anonymous"}
    assert len(_documents(server, "mixed", origin="sync:team-b")) == 2

    # Re-syncing the first folder after the second leaves the second's and the uploads alone.
    report = _sync(server, "mixed", first)
    assert (report["added"], report["updated"], report["unchanged"], report["deleted"]) == (0, 0, 3, 0)
    assert len(_documents(server, "mixed")) == 8

    # Emptying the second folder deletes exactly its two documents.
    for name in ("b1.md", "b2.md", "upload-0.md"):
        (second / name).unlink()
    report = _sync(server, "mixed", second)
    assert report["deleted"] == 2
    assert sorted(str(d["origin"]) for d in _documents(server, "mixed")) == ["sync:team-a"] * 3 + ["upload"] * 3


def test_tags_are_edited_and_survive_a_reupload(server: RunningServer) -> None:
    base = server.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "tagged"}, timeout=30).status_code == 201
    files = [("files", ("note.md", b"# Note\n\nA note about the harbour.", "text/markdown"))]
    response = requests.post(f"{base}/api/kbs/tagged/documents", params={"wait": "true"}, files=files,
                             data={"tags": "red, blue"}, timeout=300)
    assert response.status_code == 201, response.text
    (doc,) = _documents(server, "tagged")
    assert doc["tags"] == ["red", "blue"]
    patched = requests.patch(f"{base}/api/kbs/tagged/documents/{doc['doc_id']}", json={"tags": ["港口", " green "]},
                             timeout=30)
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == ["港口", "green"]
    # A new version without a tags field keeps the tags.
    files = [("files", ("note.md", b"# Note\n\nA note about the harbour at night.", "text/markdown"))]
    assert requests.post(f"{base}/api/kbs/tagged/documents", params={"wait": "true"}, files=files,
                         timeout=300).json()["updated"] == 1
    assert _documents(server, "tagged")[0]["tags"] == ["港口", "green"]
    bad = requests.patch(f"{base}/api/kbs/tagged/documents/{doc['doc_id']}", json={"tags": "red"}, timeout=30)
    assert bad.status_code == 422
    missing = requests.patch(f"{base}/api/kbs/tagged/documents/nope", json={"tags": []}, timeout=30)
    assert missing.status_code == 404
    assert requests.post(f"{base}/api/kbs/tagged/documents", params={"wait": "true"}, files=files,
                         data={"tags": "[1, 2"}, timeout=30).status_code == 422


def test_quota_refuses_an_upload_with_the_figures(server: RunningServer) -> None:
    base = server.base_url
    assert requests.post(f"{base}/api/kbs", json={"name": "small"}, timeout=30).status_code == 201
    big = b"lorem ipsum dolor " * 40_000  # 720 kB, over the 0.5 MB quota on its own
    response = requests.post(f"{base}/api/kbs/small/documents", files=[("files", ("big.txt", big, "text/plain"))],
                             timeout=60)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "quota of 0.5 MB (server.max_kb_mb)" in error["message"]
    assert "this upload of 0.69 MB" in error["message"]
    assert not (server.home / "uploads" / "small" / "big.txt").exists()
    ok = requests.post(f"{base}/api/kbs/small/documents", params={"wait": "true"},
                       files=[("files", ("ok.txt", b"a small file about kites", "text/plain"))], timeout=300)
    assert ok.status_code == 201, ok.text
