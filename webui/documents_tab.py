"""The documents tab: upload, list and delete documents; create and delete knowledge bases; folder syncs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from rag.errors import InvalidInput, RagError
from rag.jobs import JobRunner
from rag.service import RagService
from webui.conversations import owner_of
from webui.i18n import Relabeler, t
from webui.render import document_headers, document_rows, ingest_summary, job_headers, job_rows

log = logging.getLogger(__name__)
# The same audit log as the REST API's writes (rag.api.audit); the UI's only users hold an admin key
# (or sit on loopback without keys), named "ui".
audit_log = logging.getLogger("rag.audit")


def audit(action: str, kb: str, **details: Any) -> None:
    extra = "".join(f" {name}={json.dumps(str(value), ensure_ascii=False)}" for name, value in details.items())
    audit_log.info("action=%s key=ui kb=%s outcome=ok%s", action, json.dumps(kb, ensure_ascii=False), extra)

JOB_POLL_SECONDS = 1.5


def error_md(lang: str, exc: Exception) -> str:
    message = exc.message if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
    return f"⚠️ **{t(lang, 'error')}:** {message}"


def kb_choices(service: RagService) -> list[str]:
    return [kb.name for kb in service.list_kbs()]


def remove_gradio_copies(paths: list[Path]) -> None:
    """Delete Gradio's copies of uploaded files (GRADIO_TEMP_DIR/<hash>/NAME, kept forever otherwise) once
    the service has stored its own (RAG_HOME/uploads/KB), and their folders when left empty."""
    for path in paths:
        path.unlink(missing_ok=True)
        with suppress(OSError):
            path.parent.rmdir()


@dataclass
class DocumentViews:
    """The handlers behind the tab, kept apart from the layout so they read (and test) as plain functions."""

    service: RagService
    jobs: JobRunner

    def documents(
        self, kb: str | None, lang: str, selected: str | None = None
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The document table and the delete selector's choices (label: source, value: doc_id)."""
        docs = self.service.list_documents(kb) if kb and kb in kb_choices(self.service) else []
        table = pd.DataFrame(document_rows(docs, lang), columns=document_headers(lang))
        choices = [(doc.source, doc.doc_id) for doc in sorted(docs, key=lambda d: d.source.lower())]
        keep = selected if any(doc.doc_id == selected for doc in docs) else None
        return table, gr.update(choices=choices, value=keep)

    def job_table(self, kb: str | None, lang: str) -> tuple[pd.DataFrame, bool]:
        """Recent jobs of the KB, and whether one is still queued or running (keep polling)."""
        jobs = self.service.list_jobs(kb, limit=10) if kb else []
        active = any(job["status"] in {"queued", "running"} for job in jobs)
        return pd.DataFrame(job_rows(jobs, lang), columns=job_headers(lang)), active

    def upload(self, kb: str | None, files: list[str] | None, lang: str, progress: Callable[..., Any],
               uploaded_by: str | None = None, tags: str = "") -> str:
        """Store the files as uploads (origin ``upload``, originals kept, the KB's quota applied) and index them;
        ``tags``: comma-separated, set on every file's document."""
        if not kb:
            raise InvalidInput(t(lang, "no_kb"))
        if not files:
            raise InvalidInput(t(lang, "no_files"))
        paths = [Path(f) for f in files]
        tag_list = [tag.strip() for tag in (tags or "").split(",") if tag.strip()] or None
        progress((0, len(paths)), desc=t(lang, "indexing"))

        def report_progress(done: int, total: int, current: str) -> None:
            progress((done, total), desc=f"{t(lang, 'indexing')}: {current}")

        try:
            with ExitStack() as stack:
                streams = [(path.name, stack.enter_context(path.open("rb"))) for path in paths]
                report = self.service.upload(kb, streams, uploaded_by=uploaded_by, tags=tag_list,
                                             progress=report_progress)
        finally:
            remove_gradio_copies(paths)
        audit("documents.upload", kb, files=len(paths), added=report.added, failed=len(report.failed))
        return ingest_summary(report, [p.name for p in paths], lang)

    def delete_document(self, kb: str | None, doc_id: str | None, lang: str) -> str:
        if not kb:
            raise InvalidInput(t(lang, "no_kb"))
        if not doc_id:
            raise InvalidInput(t(lang, "choose_doc"))
        source = self.service.get_document(kb, doc_id).source
        self.service.delete_document(kb, doc_id)
        audit("document.delete", kb, doc_id=doc_id)
        return "🗑️ " + t(lang, "deleted", source=f"`{source}`")

    def create_kb(self, name: str, description: str, lang: str) -> str:
        info = self.service.create_kb((name or "").strip(), (description or "").strip())
        audit("kb.create", info.name)
        return "✅ " + t(lang, "created", name=f"`{info.name}`")

    def delete_kb(self, kb: str | None, confirmation: str, lang: str) -> str:
        if not kb:
            raise InvalidInput(t(lang, "no_kb"))
        if (confirmation or "").strip() != kb:
            raise InvalidInput(t(lang, "confirm_mismatch", name=kb))
        self.service.delete_kb(kb)
        audit("kb.delete", kb)
        return "🗑️ " + t(lang, "kb_deleted", name=f"`{kb}`")

    def start_sync(self, kb: str | None, folder: str, lang: str) -> str:
        if not kb:
            raise InvalidInput(t(lang, "no_kb"))
        self.service.get_kb(kb)
        # Only inside server.sync_roots, as over the API; one refusal whether or not the folder exists.
        source, root = self.service.check_sync_source((folder or "").strip())

        def work(progress: Callable[[int, int, str], None]) -> dict[str, Any]:
            return self.service.sync(kb, source, progress=progress, root=root).to_json()

        # The payload lets a restarted server resume the sync (rag/api/background.py registers the resumer).
        job_id = self.jobs.submit("sync", kb, work, payload={"folder": str(source), "root": str(root), "key": "ui"})
        audit("sync", kb, source=source, job_id=job_id)
        return "🔄 " + t(lang, "sync_started", job_id=job_id)

    def cancel_job(self, kb: str | None, lang: str) -> str:
        """Cancel the KB's running job (else its oldest queued one): it stops at its next file."""
        if not kb:
            raise InvalidInput(t(lang, "no_kb"))
        active = [job for job in self.service.list_jobs(kb, limit=50) if job["status"] in {"queued", "running"}]
        if not active:
            raise InvalidInput(t(lang, "no_active_job"))
        target = next((job for job in active if job["status"] == "running"), active[-1])
        self.jobs.cancel(target["job_id"])
        audit("job.cancel", kb, job_id=target["job_id"])
        return "⏹️ " + t(lang, "job_cancelling", job_id=target["job_id"])


@dataclass
class DocumentsTab:
    table: gr.Dataframe
    jobs_table: gr.Dataframe
    delete_choice: gr.Dropdown
    timer: gr.Timer
    views: DocumentViews


def build_documents_tab(
    service: RagService, jobs: JobRunner, kb: gr.Dropdown, lang: gr.Dropdown, text: Relabeler
) -> DocumentsTab:
    views = DocumentViews(service, jobs)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            text.bind(gr.Markdown(t("en", "upload_title")), value="upload_title")
            files = text.bind(
                gr.File(label=t("en", "upload"), file_count="multiple", elem_id="upload-files", height=180),
                label="upload",
            )
            upload_tags = text.bind(
                gr.Textbox(label=t("en", "upload_tags"), placeholder="policy, 2025", max_lines=1,
                           elem_id="upload-tags"),
                label="upload_tags",
            )
            add = text.bind(gr.Button(t("en", "add"), variant="primary", elem_id="add-files"), value="add")
            upload_result = gr.Markdown(elem_id="upload-result")
            with text.bind(
                gr.Accordion(t("en", "kbs_title"), open=False, elem_id="kb-admin"), label="kbs_title"
            ):
                new_name = text.bind(
                    gr.Textbox(
                        label=t("en", "new_kb"),
                        placeholder=t("en", "new_kb_placeholder"),
                        elem_id="new-kb-name",
                    ),
                    label="new_kb",
                    placeholder="new_kb_placeholder",
                )
                new_description = text.bind(gr.Textbox(label=t("en", "description")), label="description")
                create = text.bind(gr.Button(t("en", "create"), elem_id="create-kb"), value="create")
                confirm = text.bind(
                    gr.Textbox(label=t("en", "confirm_kb"), elem_id="confirm-kb"), label="confirm_kb"
                )
                delete_kb = text.bind(
                    gr.Button(t("en", "delete_kb"), variant="stop", elem_id="delete-kb"), value="delete_kb"
                )
                kb_result = gr.Markdown(elem_id="kb-result")
            with text.bind(
                gr.Accordion(t("en", "sync_title"), open=False, elem_id="sync-panel"), label="sync_title"
            ):
                folder = text.bind(
                    gr.Textbox(
                        label=t("en", "folder"),
                        placeholder=t("en", "folder_placeholder"),
                        elem_id="sync-folder",
                    ),
                    label="folder",
                    placeholder="folder_placeholder",
                )
                sync = text.bind(gr.Button(t("en", "sync"), elem_id="start-sync"), value="sync")
                sync_result = gr.Markdown(elem_id="sync-result")
        with gr.Column(scale=5):
            text.bind(gr.Markdown(t("en", "documents_title")), value="documents_title")
            table = text.bind(
                gr.Dataframe(
                    headers=document_headers("en"),
                    label=t("en", "documents"),
                    interactive=False,
                    wrap=True,
                    elem_id="documents-table",
                    column_widths=["22%", "10%", "6%", "6%", "7%", "12%", "13%", "9%", "15%"],
                ),
                label="documents",
            )
            with gr.Row(equal_height=True):
                delete_choice = text.bind(
                    gr.Dropdown(
                        label=t("en", "delete_doc"), choices=[], value=None, scale=4, elem_id="delete-choice"
                    ),
                    label="delete_doc",
                )
                delete = text.bind(
                    gr.Button(t("en", "delete"), variant="stop", scale=1, elem_id="delete-doc"),
                    value="delete",
                )
                refresh = text.bind(
                    gr.Button(t("en", "refresh"), scale=1, elem_id="refresh-docs"), value="refresh"
                )
            delete_result = gr.Markdown(elem_id="delete-result")
            jobs_table = text.bind(
                gr.Dataframe(
                    headers=job_headers("en"),
                    label=t("en", "jobs"),
                    interactive=False,
                    wrap=True,
                    elem_id="jobs-table",
                ),
                label="jobs",
            )
            with gr.Row(equal_height=True):
                cancel_job = text.bind(
                    gr.Button(t("en", "cancel_job"), variant="stop", scale=1, elem_id="cancel-job"),
                    value="cancel_job",
                )
                cancel_result = gr.Markdown(elem_id="cancel-result")
    timer = gr.Timer(JOB_POLL_SECONDS, active=False)

    def guarded(action: Callable[..., str]) -> Callable[..., str]:
        """Run an action and show its outcome, or the reason it failed, in the tab's result line."""

        def run(*args: Any) -> str:
            lang_value = args[-1]
            try:
                return action(*args)
            except Exception as exc:
                if not isinstance(exc, RagError):
                    log.exception("web UI action failed")
                return error_md(lang_value, exc)

        return run

    def upload(
        kb_name: str | None, paths: list[str] | None, tags: str, language: str, request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[str, Any]:
        try:
            # None empties the file picker
            return views.upload(kb_name, paths, language, progress, owner_of(request), tags), None
        except Exception as exc:
            if not isinstance(exc, RagError):
                log.exception("upload failed")
            return error_md(language, exc), gr.update()

    def refresh_kbs(selected: str | None) -> dict[str, Any]:
        names = kb_choices(service)
        return gr.update(
            choices=names, value=selected if selected in names else (names[0] if names else None)
        )

    doc_outputs = [table, delete_choice]
    refresh_docs = {
        "fn": views.documents,
        "inputs": [kb, lang, delete_choice],
        "outputs": doc_outputs,
        "queue": False,
    }

    def jobs_and_timer(kb_name: str | None, language: str) -> tuple[pd.DataFrame, Any]:
        frame, active = views.job_table(kb_name, language)
        return frame, gr.Timer(active=active)

    add.click(upload, inputs=[kb, files, upload_tags, lang], outputs=[upload_result, files]).then(**refresh_docs)
    delete.click(
        guarded(views.delete_document), inputs=[kb, delete_choice, lang], outputs=delete_result
    ).then(**refresh_docs)
    refresh.click(**refresh_docs).then(jobs_and_timer, inputs=[kb, lang], outputs=[jobs_table, timer])

    def select_created(name: str, current: str | None) -> tuple[dict[str, Any], str]:
        created = (name or "").strip()
        if created in kb_choices(service):
            return refresh_kbs(created), ""
        return refresh_kbs(current), name

    create.click(guarded(views.create_kb), inputs=[new_name, new_description, lang], outputs=kb_result).then(
        select_created, inputs=[new_name, kb], outputs=[kb, new_name]
    )
    delete_kb.click(guarded(views.delete_kb), inputs=[kb, confirm, lang], outputs=kb_result).then(
        lambda current: (refresh_kbs(current), ""), inputs=kb, outputs=[kb, confirm]
    )
    sync.click(guarded(views.start_sync), inputs=[kb, folder, lang], outputs=sync_result).then(
        jobs_and_timer, inputs=[kb, lang], outputs=[jobs_table, timer]
    )
    cancel_job.click(guarded(views.cancel_job), inputs=[kb, lang], outputs=cancel_result).then(
        jobs_and_timer, inputs=[kb, lang], outputs=[jobs_table, timer]
    )
    timer.tick(jobs_and_timer, inputs=[kb, lang], outputs=[jobs_table, timer]).then(**refresh_docs)
    kb.change(**refresh_docs).then(jobs_and_timer, inputs=[kb, lang], outputs=[jobs_table, timer])
    return DocumentsTab(table, jobs_table, delete_choice, timer, views)
