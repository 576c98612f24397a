"""Storage hygiene and backups on a real RAG_HOME: deleting a document removes its stored upload, `rag gc`
drops the embeddings of deleted chunks beyond the configured cache, and an export with Chinese file
names imports as the same documents, chunks and search results."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from rag.backup import export_kb, import_kb
from rag.config import load_settings
from rag.errors import InvalidInput, KBExists
from rag.service import RagService
from rag.store.jobs import JobStore
from tests.conftest import SAMPLE_DOCS

FILES = {name.rsplit("/", 1)[-1]: text for name, text in SAMPLE_DOCS.items()} | {
    "第二章 安装指南.md": "# 安装指南\n\n先下载安装包，然后双击运行。安装完成后重启电脑。",
    "报告/年度总结（2024）.txt": "二〇二四年度总结：销售额增长百分之十二，新开门店三家。",
}


def _upload_all(service: RagService, kb: str, tags: list[str] | None = None) -> None:
    files = [(name, io.BytesIO(text.encode("utf-8"))) for name, text in FILES.items()]
    report = service.upload(kb, files, uploaded_by="tester", tags=tags)
    assert report.added == len(FILES) and not report.failed, report.to_json()


def _rag(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_CONFIG", None)
    return subprocess.run([str(Path(sys.executable).with_name("rag")), *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_delete_and_gc_reclaim_storage(rag_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_STORE__UNUSED_EMBEDDINGS_KEPT", "2")
    service = RagService(load_settings())
    service.create_kb("hygiene")
    _upload_all(service, "hygiene")
    uploads = rag_home / "uploads" / "hygiene"
    assert sorted(p.relative_to(uploads).as_posix() for p in uploads.rglob("*") if p.is_file()) == sorted(FILES)
    before = service.kb_storage("hygiene")
    docs = service.list_documents("hygiene")
    assert {d.origin for d in docs} == {"upload"} and {d.uploaded_by for d in docs} == {"tester"}

    half = docs[: len(docs) // 2]
    for doc in half:
        service.delete_document("hygiene", doc.doc_id)
        assert doc.path is not None and not Path(doc.path).exists()  # the stored original went with it
    # The first delete started the background sweep; how much it dropped depends on when its thread ran.
    service.embedding_sweeper.wait()
    unused_before_gc = service.catalog.unused_embedding_count()
    service.catalog.close()

    # `rag gc` in its own process, as a user runs it.
    done = _rag(rag_home, "gc", "--json")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    service = RagService(load_settings())
    after_half = service.kb_storage("hygiene")
    assert after_half.uploads_bytes < before.uploads_bytes and after_half.catalog_bytes < before.catalog_bytes

    for doc in service.list_documents("hygiene"):
        service.delete_document("hygiene", doc.doc_id)
    report = service.collect_garbage()
    with sqlite3.connect(service.settings.catalog_path) as db:
        live = db.execute("SELECT COUNT(*) FROM chunks WHERE deleted_gen IS NULL").fetchone()[0]
    assert live == 0
    # Only the configured cache of unused vectors is left (the sample KB has far more than 2 chunks).
    assert service.catalog.embedding_count() == 2 == report.unused_embeddings_kept
    assert first["embeddings_dropped"] == max(0, unused_before_gc - 2)
    assert not any(p.is_file() for p in uploads.rglob("*"))  # the KB's uploads folder is empty
    print(f"\nstorage before {before.to_json()}, after deleting half and gc {after_half.to_json()}")
    service.catalog.close()


def test_gc_removes_stray_uploads_and_folders_of_deleted_kbs(service: RagService, rag_home: Path) -> None:
    service.create_kb("strays")
    _upload_all(service, "strays")
    stray = rag_home / "uploads" / "strays" / "never-indexed.bin"
    stray.write_bytes(b"\0" * 1000)
    orphan = rag_home / "uploads" / "deleted-kb" / "old.txt"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("left behind", encoding="utf-8")
    waiting = rag_home / "uploads" / "strays" / "queued.md"  # stored for a job that has not run yet
    waiting.write_text("# queued", encoding="utf-8")
    old = 1_000_000_000.0  # past the grace period: nothing new is touched
    for path in (stray, orphan, orphan.parent, waiting):
        os.utime(path, (old, old))
    jobs = JobStore(service.catalog)
    jobs.create("queued-job", "ingest", "strays", payload={"files": [[str(waiting), "queued.md"]]})
    for job_id, age_days in (("ancient", 40), ("recent", 1)):
        jobs.create(job_id, "ingest", "strays")
        jobs.finish(job_id, "succeeded", {"added": 1})
        with sqlite3.connect(service.settings.catalog_path) as db:
            db.execute("UPDATE jobs SET finished_at=? WHERE job_id=?", (time.time() - age_days * 86400, job_id))
    report = service.collect_garbage()
    assert not stray.exists() and not orphan.parent.exists() and waiting.exists()
    assert (report.upload_files_removed, report.upload_folders_removed) == (1, 1)
    assert report.jobs_purged == 1  # older than jobs.keep_days (30)
    assert jobs.get("ancient") is None and jobs.get("recent") is not None and jobs.get("queued-job") is not None
    assert len([p for p in (rag_home / "uploads" / "strays").rglob("*") if p.is_file()]) == len(FILES) + 1


def test_export_import_round_trip_with_chinese_names(service: RagService, tmp_path: Path) -> None:
    service.create_kb("源库", "中文文件名的知识库")
    _upload_all(service, "源库", tags=["备份", "test"])
    shares = tmp_path / "share"
    (shares / "子目录").mkdir(parents=True)
    (shares / "子目录" / "会议纪要.md").write_text("# 会议纪要\n\n周三下午三点在三楼会议室讨论预算。", encoding="utf-8")
    assert service.sync("源库", shares).added == 1
    archive = tmp_path / "备份.tar.gz"
    exported = export_kb(service, "源库", archive)
    assert exported.documents == len(FILES) + 1 and exported.files == len(FILES)

    imported = import_kb(service, archive, "副本")
    assert (imported.documents, imported.chunks) == (exported.documents, exported.chunks)

    def documents(kb: str) -> list[dict[str, object]]:
        rows = [d.to_json() for d in service.list_documents(kb)]
        return [{k: v for k, v in row.items() if k != "updated_at"} for row in rows]

    assert documents("副本") == documents("源库")
    for doc in service.list_documents("源库"):
        assert [(c.ordinal, c.text, c.heading, c.page) for c in service.document_chunks("副本", doc.doc_id)] == \
            [(c.ordinal, c.text, c.heading, c.page) for c in service.document_chunks("源库", doc.doc_id)]
    def hits(kb: str, query: str) -> list[tuple[float, str, str, str]]:
        # Exactly tied scores (0.0 past the relevant ones) may come in either order: chunk ids differ.
        found = [(-round(h.score, 5), h.doc_id, h.source, h.text) for h in service.search(kb, query, top_k=10)]
        return sorted(found)

    for query in ("火锅", "安装完成后重启", "vacation days", "预算会议", "年度总结 销售额"):
        original = hits("源库", query)
        assert hits("副本", query) == original and original[0][0] < 0, query
    # The stored originals came along, under the new KB's uploads folder, byte for byte.
    for doc in service.list_documents("副本"):
        if doc.origin == "upload":
            assert service.document_original("副本", doc.doc_id).read_text(encoding="utf-8") == FILES[doc.source]
    with pytest.raises(KBExists):
        import_kb(service, archive, "副本")


def test_import_refuses_what_is_not_an_export(service: RagService, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar file")
    with pytest.raises(InvalidInput, match="not a knowledge-base export"):
        import_kb(service, junk)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, data in (("manifest.json", json.dumps({"format": "rag-kb-export", "version": 1, "kb": "evil"})),
                           ("files/../../escape.txt", "x")):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tar.addfile(info, io.BytesIO(data.encode()))
    with pytest.raises(InvalidInput, match="not a safe relative path"):
        import_kb(service, evil)
    assert not service.catalog.kb_exists("evil")  # a failed import leaves no KB behind
    assert not (tmp_path.parent / "escape.txt").exists()


def test_cli_export_import_and_origin_filter(service: RagService, rag_home: Path, tmp_path: Path) -> None:
    service.create_kb("cli")
    _upload_all(service, "cli", tags=["t"])
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "笔记.md").write_text("# 笔记\n\n星期五交周报。", encoding="utf-8")
    service.sync("cli", folder)
    service.catalog.close()
    archive = tmp_path / "导出" / "cli.tar.gz"
    exported = _rag(rag_home, "kb", "export", "cli", str(archive), "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["documents"] == len(FILES) + 1
    imported = _rag(rag_home, "kb", "import", str(archive), "--as", "cli-copy", "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["kb"] == "cli-copy"
    listed = _rag(rag_home, "docs", "list", "--kb", "cli-copy", "--origin", "upload", "--json")
    assert listed.returncode == 0, listed.stderr
    documents = json.loads(listed.stdout)["documents"]
    assert sorted(d["source"] for d in documents) == sorted(FILES) and {d["origin"] for d in documents} == {"upload"}
    assert all(d["tags"] == ["t"] for d in documents)
    again = _rag(rag_home, "kb", "import", str(archive), "--as", "cli-copy")
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr
    missing = _rag(rag_home, "kb", "import", str(tmp_path / "none.tar.gz"))
    assert missing.returncode != 0 and "no such archive" in missing.stderr
