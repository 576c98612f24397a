"""The web UI: a Gradio Blocks app over the service layer, mounted into the FastAPI app at /ui.

Use ``mount_ui`` to mount it: Gradio's ``mount_gradio_app`` resets the theme and CSS of the Blocks it
mounts, so the theme (system fonts only: no font or asset requests leave the server) is passed there.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (the environment variable must be set before Gradio reads it)
from fastapi import FastAPI  # noqa: E402

from rag.jobs import JobRunner  # noqa: E402
from rag.service import RagService  # noqa: E402
from webui.chat_tab import ConversationViews, build_chat_tab  # noqa: E402
from webui.document_view import SCROLL_JS, build_document_tab  # noqa: E402
from webui.documents_tab import build_documents_tab, kb_choices  # noqa: E402
from webui.feedback_tab import build_feedback_tab, rating_choices  # noqa: E402
from webui.filters import filter_choices  # noqa: E402
from webui.i18n import BROWSER_LANGUAGE_JS, LANGUAGE_CHOICES, Relabeler, normalize_lang, t  # noqa: E402

DEMO_KB = "demo"

# System font stacks with CJK fallbacks; gr.themes.Font (not GoogleFont) emits no stylesheet import.
SANS = [
    "system-ui",
    "-apple-system",
    "Segoe UI",
    "Roboto",
    "Noto Sans",
    "PingFang SC",
    "Hiragino Sans GB",
    "Microsoft YaHei",
    "Noto Sans CJK SC",
    "sans-serif",
]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Noto Sans Mono CJK SC", "monospace"]
THEME = gr.themes.Default(
    primary_hue="indigo",
    secondary_hue="slate",
    neutral_hue="slate",
    font=[gr.themes.Font(name) for name in SANS],
    font_mono=[gr.themes.Font(name) for name in MONO],
)

CSS = """
.gradio-container { max-width: 1320px !important; margin: 0 auto !important; }
#app-header { align-items: center; }
#app-header h1 { margin-bottom: 0; }
.rag-sources { margin-top: 8px; font-size: 0.92em; }
.rag-source summary { cursor: pointer; padding: 2px 0; }
.rag-source[open] summary { font-weight: 600; }
.rag-snippet { color: var(--body-text-color-subdued); }
.rag-not-covered { margin-top: 8px; padding: 8px 12px; border-radius: 8px;
                   background: var(--color-accent-soft); font-size: 0.95em; }
.rag-open-chunk { display: inline-block; margin: 2px 0 6px 0; font-size: 0.92em; }
.rag-chunks { max-height: 720px; overflow-y: auto; }
.rag-chunk { margin: 0 0 10px 0; padding: 8px 12px; border-radius: 8px;
             border: 1px solid var(--border-color-primary); white-space: pre-wrap; }
.rag-chunk-head { font-size: 0.85em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.rag-chunk-highlight { border: 2px solid var(--color-accent); background: var(--color-accent-soft); }
.rag-feedback { margin: 0 0 12px 0; padding: 8px 12px; border-radius: 8px;
                border: 1px solid var(--border-color-primary); }
.rag-feedback-head { font-size: 0.85em; color: var(--body-text-color-subdued); }
.rag-feedback-comment { margin-top: 4px; font-style: italic; }
footer { display: none !important; }
"""


def default_kb(names: list[str]) -> str | None:
    if DEMO_KB in names:
        return DEMO_KB
    return names[0] if names else None


def build_ui(service: RagService, job_runner: JobRunner | None = None) -> gr.Blocks:
    """The whole UI; ``job_runner`` lets the server share its background-job pool (syncs)."""
    jobs = job_runner or JobRunner(service.catalog)
    text = Relabeler()
    with gr.Blocks(
        title="Knowledge Assistant · 知识库助手", analytics_enabled=False, fill_width=True
    ) as blocks:
        with gr.Row(elem_id="app-header", equal_height=True):
            with gr.Column(scale=6):
                text.bind(gr.Markdown(t("en", "title")), value="title")
                text.bind(gr.Markdown(t("en", "subtitle")), value="subtitle")
            names = kb_choices(service)
            kb = text.bind(
                gr.Dropdown(
                    choices=names,
                    value=default_kb(names),
                    label=t("en", "kb"),
                    scale=2,
                    elem_id="kb-select",
                    allow_custom_value=False,
                ),
                label="kb",
            )
            lang = text.bind(
                gr.Dropdown(
                    choices=LANGUAGE_CHOICES,
                    value="en",
                    label=t("en", "language"),
                    scale=1,
                    min_width=140,
                    elem_id="language",
                ),
                label="language",
            )
        url_query = gr.Textbox(visible=False, elem_id="url-query")  # the page's ?query, read on load
        with gr.Tabs(elem_id="tabs") as tabs:
            with text.bind(
                gr.Tab(t("en", "tab_chat"), id="chat", elem_id="tab-chat"), label="tab_chat"
            ) as chat_tab:
                chat = build_chat_tab(service, kb, lang, text)
            with text.bind(
                gr.Tab(t("en", "tab_documents"), id="documents", elem_id="tab-documents"),
                label="tab_documents",
            ):
                documents = build_documents_tab(service, jobs, kb, lang, text)
            with text.bind(
                gr.Tab(t("en", "tab_document"), id="document", elem_id="tab-document"), label="tab_document"
            ):
                detail = build_document_tab(service, kb, lang, text)
            with text.bind(
                gr.Tab(t("en", "tab_feedback"), id="feedback", elem_id="tab-feedback"), label="tab_feedback"
            ) as feedback_tab:
                feedback = build_feedback_tab(service, lang, text)
        feedback_tab.select(feedback.views.recent, inputs=[feedback.rating, lang], outputs=feedback.listing,
                            queue=False)
        conversations = ConversationViews(service)
        filters = chat.filters
        # Tags may have been edited meanwhile (document detail, API): the filter's choices are read afresh.
        chat_tab.select(functools.partial(filter_choices, service),
                        inputs=[kb, filters.tags, filters.formats, filters.extra_kbs],
                        outputs=filters.choice_outputs, queue=False)

        def on_load(browser_lang: str, selected: str | None, query: str) -> tuple[str, dict[str, Any], str]:
            # KBs may have been created since the page was built (CLI, API): list them afresh.
            current = kb_choices(service)
            value = selected if selected in current else default_kb(current)
            return normalize_lang(browser_lang), gr.update(choices=current, value=value), query

        def restore(query: str, language: str, selected: str | None, request: gr.Request) -> tuple[Any, ...]:
            """Reopen what the address names: ``?conversation=ID`` and/or ``?kb=K&doc=ID[&chunk=N]``."""
            params = {name: values[0] for name, values in parse_qs((query or "").lstrip("?")).items()}
            chat_state = conversations.open(params.get("conversation"), language, request)
            *chat_values, kb_update = chat_state
            doc_kb, doc_id = params.get("kb"), params.get("doc")
            if doc_kb in kb_choices(service) and doc_id:
                kb_update = gr.update(value=doc_kb)
                return (*chat_values, kb_update, gr.Tabs(selected="document"),
                        detail.views.choices(doc_kb, doc_id), params.get("chunk", ""))
            kb_name = kb_update.get("value", selected) if isinstance(kb_update, dict) else selected
            return (*chat_values, kb_update, gr.Tabs(), detail.views.choices(kb_name, None), "")

        def relabel(language: str) -> list[Any]:
            return text.updates(language)

        blocks.load(
            on_load,
            inputs=[lang, kb, url_query],
            outputs=[lang, kb, url_query],
            js=f"(lang, kb, q) => [({BROWSER_LANGUAGE_JS})(), kb, window.location.search]",
            queue=False,
        ).then(
            restore,
            inputs=[url_query, lang, kb],
            outputs=[*chat.restore_outputs, kb, tabs, detail.document, detail.highlight],
            queue=False,
        ).then(
            documents.views.documents,
            inputs=[kb, lang, documents.delete_choice],
            outputs=[documents.table, documents.delete_choice],
            queue=False,
        ).then(
            functools.partial(filter_choices, service),
            inputs=[kb, filters.tags, filters.formats, filters.extra_kbs],
            outputs=filters.choice_outputs,
            queue=False,
        ).then(
            detail.views.show,
            inputs=[kb, detail.document, detail.highlight, lang],
            outputs=detail.show_outputs,
            queue=False,
        ).then(None, js=SCROLL_JS, queue=False)
        lang.change(relabel, inputs=lang, outputs=text.components, queue=False).then(
            documents.views.documents,
            inputs=[kb, lang, documents.delete_choice],
            outputs=[documents.table, documents.delete_choice],
            queue=False,
        ).then(
            lambda k, lg: documents.views.job_table(k, lg)[0],
            inputs=[kb, lang],
            outputs=documents.jobs_table,
            queue=False,
        ).then(conversations.sidebar, inputs=[chat.conversation_id, lang], outputs=chat.sidebar, queue=False).then(
            lambda language: gr.update(choices=rating_choices(language)), inputs=lang, outputs=feedback.rating,
            queue=False,
        )
    return blocks


def mount_ui(
    app: FastAPI,
    service: RagService,
    job_runner: JobRunner | None = None,
    path: str = "/ui",
    auth: Callable[[str, str], bool] | None = None,
) -> FastAPI:
    """Mount the UI into ``app`` at ``path`` with the local-only theme and the server's upload limit."""
    blocks = build_ui(service, job_runner)
    return gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        auth=auth,
        theme=THEME,
        css=CSS,
        footer_links=[],
        ssr_mode=False,
        max_file_size=int(service.settings.server.max_file_mb * 1024 * 1024),
        show_error=True,
    )
