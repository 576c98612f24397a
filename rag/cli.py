"""`rag …`: the command-line front door. Every command calls rag.service; errors become one line on stderr."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rag.config import load_settings
from rag.errors import InvalidInput, RagError
from rag.indexing import IngestReport

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A local RAG knowledge assistant.")
kb_app = typer.Typer(no_args_is_help=True, help="Create, list and delete knowledge bases.")
app.add_typer(kb_app, name="kb")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"debug": False}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
KBOption = Annotated[str, typer.Option("--kb", help="Knowledge base name.")]


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


def service():  # type: ignore[no-untyped-def]
    from rag.service import RagService

    return RagService(load_settings())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int, str], None]]:
    if not enabled:
        yield lambda done, total, current: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("[dim]{task.fields[current]}"))
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(label, total=None, current="")

        def update(done: int, total: int, current: str) -> None:
            progress.update(task, completed=done, total=total, current=current[-60:])

        yield update


# -- kb -------------------------------------------------------------------------------------
@kb_app.command("create")
def kb_create(name: str, description: Annotated[str, typer.Option(help="What the KB holds.")] = "") -> None:
    """Create a knowledge base."""
    info = service().create_kb(name, description)
    out.print(f"created knowledge base [bold]{info.name}[/bold]")


@kb_app.command("list")
def kb_list(as_json: JsonFlag = False) -> None:
    """List knowledge bases with their document and chunk counts."""
    kbs = service().list_kbs()
    if as_json:
        print_json({"kbs": [kb.to_json() for kb in kbs]})
        return
    table = Table("name", "documents", "chunks", "description")
    for kb in kbs:
        table.add_row(kb.name, str(kb.documents), str(kb.chunks), kb.description)
    out.print(table)


@kb_app.command("delete")
def kb_delete(name: str, yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False) -> None:
    """Delete a knowledge base and its indexes."""
    if not yes:
        raise RagError(f"refusing to delete '{name}' without --yes")
    service().delete_kb(name)
    out.print(f"deleted knowledge base [bold]{name}[/bold]")


@kb_app.command("optimize")
def kb_optimize(name: str, as_json: JsonFlag = False) -> None:
    """Merge the KB's index segments into one, dropping deleted chunks (searches keep running)."""
    started = time.perf_counter()
    segments = service().optimize_kb(name)
    seconds = round(time.perf_counter() - started, 3)
    if as_json:
        print_json({"kb": name, "segments": segments, "seconds": seconds})
        return
    out.print(f"optimized [bold]{name}[/bold]: {segments} segment(s) in {seconds} s")


@kb_app.command("export")
def kb_export(name: str, file: Annotated[Path, typer.Argument(help="The archive to write (.tar.gz).")],
              as_json: JsonFlag = False) -> None:
    """Write a self-contained archive of the KB: catalog rows, settings, stored originals (docs/backups.md)."""
    from rag.backup import export_kb

    report = export_kb(service(), name, file)
    if as_json:
        print_json(report.to_json())
        return
    out.print(f"exported [bold]{name}[/bold] to {report.file}: {report.documents} documents, {report.chunks} "
              f"chunks, {report.files} stored files, {report.bytes / 1e6:.2f} MB", highlight=False)


@kb_app.command("import")
def kb_import(file: Annotated[Path, typer.Argument(help="An archive written by `rag kb export`.")],
              as_name: Annotated[str | None, typer.Option("--as", help="Name of the new KB (default: the "
                                                          "exported KB's).")] = None,
              as_json: JsonFlag = False) -> None:
    """Restore an exported KB as a new KB; its indexes are rebuilt from the archived catalog rows."""
    from rag.backup import import_kb

    report = import_kb(service(), file, as_name)
    if as_json:
        print_json(report.to_json())
        return
    out.print(f"imported [bold]{report.kb}[/bold] from {report.file}: {report.documents} documents, "
              f"{report.chunks} chunks, {report.files} stored files", highlight=False)


@app.command()
def gc(as_json: JsonFlag = False,
       vacuum: Annotated[bool, typer.Option("--vacuum", help="Also rewrite the catalog file so that it shrinks "
                                            "(briefly blocks every writer).")] = False) -> None:
    """Drop cached embeddings no chunk uses, purge old job records, remove stray upload files."""
    report = service().collect_garbage(vacuum=vacuum)
    if as_json:
        print_json(report.to_json())
        return
    out.print(f"dropped {report.embeddings_dropped} unused embeddings (kept {report.unused_embeddings_kept} for "
              f"re-adds, {report.embeddings_left} left), purged {report.jobs_purged} job records, removed "
              f"{report.upload_files_removed} upload files ({report.upload_bytes_freed / 1e6:.2f} MB), "
              f"{report.upload_folders_removed} folders of deleted KBs, {report.staging_files_removed} staging files")


# -- ingest / sync --------------------------------------------------------------------------
@app.command()
def ingest(kb: KBOption, paths: Annotated[list[Path], typer.Argument(help="Files and folders.")],
           as_json: JsonFlag = False) -> None:
    """Add new files, re-index changed ones, skip unchanged ones."""
    svc = service()
    with progress_bar("ingesting", not as_json and sys.stderr.isatty()) as update:
        report = svc.ingest(kb, paths, progress=update)
    _print_report(report, as_json)


@app.command()
def sync(kb: KBOption, folder: Path, as_json: JsonFlag = False) -> None:
    """Mirror a folder: ingest's work plus deleting documents whose files are gone."""
    svc = service()
    with progress_bar("syncing", not as_json and sys.stderr.isatty()) as update:
        report = svc.sync(kb, folder, progress=update)
    _print_report(report, as_json)


def _print_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    out.print(
        f"[bold]{report.kb}[/bold]: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.deleted} deleted, {len(report.failed)} failed; {report.chunks} chunks in {report.seconds:.1f}s"
    )
    if report.formats:
        table = Table("format", "seen", "indexed", "failed")
        for fmt, stats in sorted(report.formats.items()):
            table.add_row(fmt, str(stats.seen), str(stats.indexed), str(stats.failed))
        out.print(table)
    for item in report.recovered:
        out.print(f"[yellow]recovered[/yellow] {item['path']}: {item['note']}", highlight=False)
    for failure in report.failed:
        out.print(f"[red]failed[/red] {failure['path']}: {failure['error']}", highlight=False)


# -- search ---------------------------------------------------------------------------------
@app.command()
def search(kb: KBOption, query: str,
           top_k: Annotated[int | None, typer.Option("--top-k", help="Number of hits.")] = None,
           mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
           explain: Annotated[bool, typer.Option(help="Show each retriever's rank and raw score.")] = False,
           as_json: JsonFlag = False) -> None:
    """Search a knowledge base (hybrid BM25 + dense)."""
    if mode not in {"hybrid", "bm25", "dense"}:
        raise RagError("--mode must be hybrid, bm25 or dense")
    hits = service().search(kb, query, top_k=top_k, mode=mode)  # type: ignore[arg-type]
    if as_json:
        print_json({"query": query, "hits": [hit.to_json(with_explain=explain) for hit in hits]})
        return
    if not hits:
        out.print("no results")
    for rank, hit in enumerate(hits, start=1):
        where = f"{hit.source}" + (f" p.{hit.page}" if hit.page else "")
        out.print(f"[bold]{rank}.[/bold] {hit.score:.3f}  [cyan]{where}[/cyan]", highlight=False)
        snippet = " ".join(hit.text.split())
        out.print(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}", highlight=False)
        if explain:
            out.print(f"   [dim]{json.dumps(hit.explain)}[/dim]", highlight=False)


# -- eval -----------------------------------------------------------------------------------
@app.command("eval")
def evaluate(beir: Annotated[Path | None, typer.Option("--beir", help="A BEIR folder.")] = None,
             questions: Annotated[Path | None, typer.Option(
                 "--questions", help="A question file (JSON lines, docs/evaluation.md) to ask of --kb.")] = None,
             split: Annotated[str, typer.Option(help="qrels split name.")] = "test",
             limit: Annotated[int | None, typer.Option(help="Evaluate the first N queries.")] = None,
             mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
             generate: Annotated[bool, typer.Option("--generate", help="Also generate answers.")] = False,
             kb: Annotated[str | None, typer.Option(help="KB to (re)use; default: one named after the dataset.")] = None,
             details: Annotated[Path | None, typer.Option(
                 "--details", help="With --generate: write each answer to this JSON-lines file as it is made.")] = None,
             as_json: JsonFlag = False) -> None:
    """Retrieval (and answer) quality on a BEIR dataset: nDCG@10, Recall@10/100, MRR@10, latency."""
    from rag.evaluate import run_eval

    if (beir is None) == (questions is None):
        raise InvalidInput("give exactly one of --beir FOLDER and --questions FILE")
    svc = service()
    if questions is not None:
        from rag.qa import evaluate_questions

        if not kb:
            raise InvalidInput("--questions needs --kb NAME: the knowledge base to ask")
        result = evaluate_questions(svc, kb, questions, limit=limit)
        if as_json:
            print_json(result)
            return
        table = Table("metric", "value")
        for key, value in result.items():
            if key != "categories":
                table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        out.print(table)
        return
    assert beir is not None
    with progress_bar("indexing", not as_json and sys.stderr.isatty()) as update:
        result = run_eval(svc, beir, split=split, limit=limit, mode=mode, generate=generate, kb=kb,
                          progress=update, details=details)
    if as_json:
        print_json(result)
        return
    table = Table("metric", "value")
    for key, value in result.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)


# -- ask ------------------------------------------------------------------------------------
@app.command()
def ask(kb: KBOption, question: str,
        top_k: Annotated[int | None, typer.Option("--top-k", help="Sources to retrieve.")] = None,
        max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Longest answer.")] = None,
        temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
        as_json: JsonFlag = False) -> None:
    """Answer a question from a knowledge base, with citations (streams to the terminal)."""
    svc = service()
    svc.get_kb(kb)
    params = svc.generation_defaults()
    if max_tokens is not None:
        params.max_tokens = max_tokens
    if temperature is not None:
        params.temperature = temperature
    options = svc.chat_options(top_k=top_k, params=params)
    answer = None
    for event in svc.stream_answer(kb, [{"role": "user", "content": question}], options):
        if event.kind == "token" and not as_json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif event.kind == "done":
            answer = event.answer
    if answer is None:
        raise RagError("no answer was produced")
    if as_json:
        print_json(answer.to_json())
        return
    sys.stdout.write("\n")
    if not answer.grounded:
        out.print("[dim](no relevant passages found in the knowledge base)[/dim]")
    for citation in answer.citations:
        where = citation.source + (f" p.{citation.page}" if citation.page else "")
        snippet = " ".join(citation.text.split())[:160]
        out.print(f"[bold][{citation.n}][/bold] [cyan]{where}[/cyan]  [dim]{snippet}[/dim]", highlight=False)


# -- docs: what was indexed ------------------------------------------------------------------
docs_app = typer.Typer(no_args_is_help=True, help="List, show, read the chunks of, and delete documents.")
app.add_typer(docs_app, name="docs")
DocIdArgument = Annotated[str, typer.Argument(help="The document's id (see `rag docs list`).")]


@docs_app.command("list")
def docs_list(kb: KBOption, as_json: JsonFlag = False,
              origin: Annotated[str | None, typer.Option(help="Only documents of this origin: upload, "
                                                         "sync:FOLDER or schedule:NAME.")] = None) -> None:
    """The KB's documents with their origin, status and chunk counts."""
    docs = service().list_documents(kb, origin)
    if as_json:
        print_json({"documents": [doc.to_json() for doc in docs]})
        return
    by_origin: dict[str, list[Any]] = {}
    for doc in docs:
        by_origin.setdefault(doc.origin, []).append(doc)
    # One table per origin, titled by it: an origin (an absolute folder) is too long for a column.
    for name, group in sorted(by_origin.items()):
        tagged = any(doc.tags for doc in group)
        table = Table("doc_id", "source", "status", "chunks", "format", *(["tags"] if tagged else []),
                      title=Text(f"{name} ({len(group)})"), title_justify="left")
        for doc in group:  # Text: a '[' in a file name is not rich markup
            table.add_row(doc.doc_id, Text(doc.source), doc.status, str(doc.chunks), doc.format,
                          *([Text(", ".join(doc.tags))] if tagged else []))
        out.print(table, highlight=False)


@docs_app.command("show")
def docs_show(kb: KBOption, doc_id: DocIdArgument, as_json: JsonFlag = False) -> None:
    """One document's metadata."""
    data = service().get_document(kb, doc_id).to_json()
    if as_json:
        print_json(data)
        return
    table = Table("field", "value")
    for key, value in data.items():
        table.add_row(key, "" if value is None else str(value))
    out.print(table)


@docs_app.command("chunks")
def docs_chunks(kb: KBOption, doc_id: DocIdArgument, as_json: JsonFlag = False) -> None:
    """A document's chunks in order, as searches see them: page, heading, token estimate, text."""
    from ingest.language import estimate_tokens

    chunks = [{"chunk_id": row.id, "order": row.ordinal, "text": row.text, "page": row.page,
               "heading": row.heading, "tokens": estimate_tokens(row.text)}
              for row in service().document_chunks(kb, doc_id)]
    if as_json:
        print_json({"chunks": chunks})
        return
    for chunk in chunks:
        where = " ".join(part for part in (f"p.{chunk['page']}" if chunk["page"] else "", chunk["heading"] or "") if part)
        out.print(f"[bold]#{chunk['order']}[/bold] [dim]id {chunk['chunk_id']}, {chunk['tokens']} tokens[/dim]"
                  f" [cyan]{where}[/cyan]", highlight=False)
        out.print(f"   {chunk['text']}", highlight=False, markup=False)


@docs_app.command("delete")
def docs_delete(kb: KBOption, doc_id: DocIdArgument,
                yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False) -> None:
    """Delete a document: gone from search when this returns."""
    if not yes:
        raise RagError(f"refusing to delete document '{doc_id}' without --yes")
    service().delete_document(kb, doc_id)
    out.print(f"deleted document [bold]{doc_id}[/bold] from [bold]{kb}[/bold]", highlight=False)


# -- feedback -------------------------------------------------------------------------------
feedback_app = typer.Typer(no_args_is_help=True, help="Ratings given to answers.")
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(kb: KBOption, file: Annotated[Path, typer.Argument(help="The JSON-lines file to write.")],
                    rating: Annotated[str | None, typer.Option(help="Only 'up' or only 'down' ratings.")] = None
                    ) -> None:
    """Write the KB's rated answers as a question file that `rag eval --questions FILE --kb NAME` reads."""
    if rating not in (None, "up", "down"):
        raise InvalidInput("--rating must be up or down")
    records = service().feedback(kb, rating)  # type: ignore[arg-type]
    lines = [json.dumps(record.to_question(), ensure_ascii=False) for record in records]
    try:
        file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {file}: {exc.strerror}") from exc
    without = sum(1 for record in records if not record.to_question()["answers"])
    note = f" ({without} without a gold answer: add \"answers\" to them)" if without else ""
    out.print(f"wrote {len(lines)} rated answer(s) of [bold]{kb}[/bold] to {file}{note}", highlight=False)


# -- serving and background work ------------------------------------------------------------
@app.command()
def serve(host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
          port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None) -> None:
    """Serve the REST API, the OpenAI-compatible /v1 and the web UI (/ui)."""
    from rag.api.server import serve as run_server

    settings = load_settings()
    run_server(settings, host or settings.server.host, port or settings.server.port)


@app.command()
def mcp() -> None:
    """Serve the knowledge bases as MCP tools over stdin/stdout (for Claude Desktop, Cursor, Cherry Studio...)."""
    from rag.mcp_server import run_stdio

    run_stdio(service())


@app.command()
def scheduler() -> None:
    """Run the scheduled syncs of the config file's `sources` until stopped."""
    from rag.scheduler import run_scheduler

    run_scheduler(load_settings())


@app.command()
def demo(if_missing: Annotated[bool, typer.Option("--if-missing", help="Only when the demo KB is absent.")] = False
         ) -> None:
    """Create the demo knowledge base from the bundled sample documents."""
    from rag.demo import ensure_demo_kb

    name, created = ensure_demo_kb(service(), only_if_missing=if_missing)
    out.print(f"demo knowledge base [bold]{name}[/bold] {'created' if created else 'already present'}")


models_app = typer.Typer(no_args_is_help=True, help="Bundled model files.")
app.add_typer(models_app, name="models")


@models_app.command("prepare")
def models_prepare() -> None:
    """Assemble and verify the bundled chat model (GGUF) so the first question does not wait for it."""
    from rag.llm.assets import bundled_gguf_path

    settings = load_settings()
    path = bundled_gguf_path(settings.models_dir)
    out.print(f"bundled chat model ready: {path}", highlight=False)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    debug = "--debug" in sys.argv
    try:
        app(standalone_mode=False)
    except RagError as exc:
        if debug:
            raise
        err.print(f"error: {exc.message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors, and anything unexpected: one line, no traceback
        if debug:
            raise
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        err.print(f"error: {type(exc).__name__}: {exc}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
