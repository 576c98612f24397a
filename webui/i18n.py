"""UI text in English and Chinese, and the binding that relabels components when the language changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import gradio as gr

Lang = Literal["en", "zh"]
LANGUAGE_CHOICES: list[tuple[str, str]] = [("English", "en"), ("中文", "zh")]

# Runs in the page on load: the browser's preferred language decides the first UI language.
BROWSER_LANGUAGE_JS = "() => ((navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en')"

TEXT: dict[str, dict[Lang, str]] = {
    # header
    "title": {"en": "# 📚 Knowledge Assistant", "zh": "# 📚 知识库助手"},
    "subtitle": {
        "en": "Ask questions about your own documents. Everything runs on this machine.",
        "zh": "就你自己的文档提问。一切都在本机运行。",
    },
    "language": {"en": "Language", "zh": "语言"},
    "kb": {"en": "Knowledge base", "zh": "知识库"},
    "tab_chat": {"en": "💬 Chat", "zh": "💬 对话"},
    "tab_documents": {"en": "📄 Documents", "zh": "📄 文档"},
    # chat
    "chatbot": {"en": "Conversation", "zh": "对话"},
    "chat_placeholder": {
        "en": "### Ask anything about the selected knowledge base\nAnswers cite their sources as [1], [2] …",
        "zh": "### 就所选知识库提任何问题\n回答会以 [1]、[2] … 标注出处",
    },
    "question": {"en": "Your question", "zh": "你的问题"},
    "question_placeholder": {
        "en": "e.g. How many vacation days do employees get?",
        "zh": "例如：员工每年有多少天带薪年假？",
    },
    "send": {"en": "Send", "zh": "发送"},
    "clear": {"en": "New conversation", "zh": "新对话"},
    "sources": {"en": "Sources", "zh": "来源"},
    "page": {"en": "p. {page}", "zh": "第 {page} 页"},
    "not_covered": {
        "en": "The documents in this knowledge base do not cover this question, so no sources were used. "
        "Try rephrasing, or upload documents about it.",
        "zh": "该知识库中的文档没有涉及这个问题，因此没有引用任何来源。可以换个说法，或上传相关文档。",
    },
    "thinking": {"en": "Searching the documents …", "zh": "正在检索文档 …"},
    "no_kb": {"en": "Choose or create a knowledge base first.", "zh": "请先选择或创建一个知识库。"},
    "error": {"en": "Error", "zh": "错误"},
    # settings
    "settings": {"en": "⚙️ Settings (this session)", "zh": "⚙️ 设置（仅本次会话）"},
    "top_k": {"en": "Passages to retrieve (top-k)", "zh": "检索段落数（top-k）"},
    "custom_fusion": {"en": "Custom fusion weights", "zh": "自定义融合权重"},
    "custom_fusion_info": {
        "en": "Off: the server's weights for the question's language.",
        "zh": "关闭时使用服务器按问题语言设定的权重。",
    },
    "bm25_weight": {"en": "Keyword (BM25) weight", "zh": "关键词（BM25）权重"},
    "dense_weight": {"en": "Semantic (embedding) weight", "zh": "语义（向量）权重"},
    "threshold": {"en": "Relevance threshold", "zh": "相关度阈值"},
    "threshold_info": {
        "en": "Passages with a fused score below this are not used.",
        "zh": "融合得分低于此值的段落不会被使用。",
    },
    "temperature": {"en": "Temperature", "zh": "温度"},
    "max_tokens": {"en": "Max answer tokens", "zh": "回答最大 token 数"},
    "reset": {"en": "Reset to defaults", "zh": "恢复默认"},
    # documents
    "upload_title": {"en": "### Add documents", "zh": "### 添加文档"},
    "upload": {
        "en": "Drop files here (PDF, Word, PowerPoint, Excel, Markdown, HTML, text …)",
        "zh": "将文件拖到这里（PDF、Word、PowerPoint、Excel、Markdown、HTML、文本 …）",
    },
    "upload_tags": {"en": "Tags for these files (optional, comma-separated)", "zh": "这些文件的标签（可选，逗号分隔）"},
    "add": {"en": "Add to knowledge base", "zh": "添加到知识库"},
    "indexing": {"en": "Indexing", "zh": "正在索引"},
    "no_files": {"en": "Choose one or more files first.", "zh": "请先选择一个或多个文件。"},
    "upload_summary": {
        "en": "**{added}** added, **{updated}** updated, **{unchanged}** unchanged, **{failed}** failed "
        "— {chunks} chunks in {seconds:.1f} s",
        "zh": "新增 **{added}**，更新 **{updated}**，未变 **{unchanged}**，失败 **{failed}** "
        "— 共 {chunks} 个分块，用时 {seconds:.1f} 秒",
    },
    "documents_title": {"en": "### Documents", "zh": "### 文档列表"},
    "documents": {"en": "Documents in this knowledge base", "zh": "本知识库中的文档"},
    "col_document": {"en": "Document", "zh": "文档"},
    "col_status": {"en": "Status", "zh": "状态"},
    "col_chunks": {"en": "Chunks", "zh": "分块"},
    "col_format": {"en": "Format", "zh": "格式"},
    "col_size": {"en": "Size", "zh": "大小"},
    "col_updated": {"en": "Updated", "zh": "更新时间"},
    "col_origin": {"en": "Origin", "zh": "来源方式"},
    "col_tags": {"en": "Tags", "zh": "标签"},
    "col_error": {"en": "Error", "zh": "错误"},
    "refresh": {"en": "Refresh", "zh": "刷新"},
    "delete_doc": {"en": "Document to delete", "zh": "要删除的文档"},
    "delete": {"en": "Delete document", "zh": "删除文档"},
    "deleted": {"en": "Deleted {source}.", "zh": "已删除 {source}。"},
    "choose_doc": {"en": "Choose a document to delete.", "zh": "请选择要删除的文档。"},
    "kbs_title": {"en": "Knowledge bases", "zh": "知识库管理"},
    "new_kb": {"en": "New knowledge base name", "zh": "新知识库名称"},
    "new_kb_placeholder": {"en": "letters, digits, _ or -", "zh": "字母、数字、_ 或 -"},
    "description": {"en": "Description", "zh": "描述"},
    "create": {"en": "Create", "zh": "创建"},
    "created": {"en": "Created knowledge base {name}.", "zh": "已创建知识库 {name}。"},
    "confirm_kb": {
        "en": "Type the selected knowledge base's name to delete it",
        "zh": "输入当前所选知识库的名称以删除它",
    },
    "delete_kb": {"en": "Delete knowledge base", "zh": "删除知识库"},
    "kb_deleted": {"en": "Deleted knowledge base {name}.", "zh": "已删除知识库 {name}。"},
    "confirm_mismatch": {
        "en": "Type “{name}” exactly to confirm the deletion.",
        "zh": "请准确输入“{name}”以确认删除。",
    },
    "sync_title": {"en": "Sync a server folder", "zh": "同步服务器上的文件夹"},
    "folder": {"en": "Folder on the server", "zh": "服务器上的文件夹路径"},
    "folder_placeholder": {"en": "/srv/handbook", "zh": "/srv/handbook"},
    "sync": {"en": "Start sync", "zh": "开始同步"},
    "sync_started": {
        "en": "Sync job `{job_id}` started: the folder's files are indexed and documents whose files are gone "
        "are removed.",
        "zh": "同步任务 `{job_id}` 已开始：索引该文件夹中的文件，并移除文件已不存在的文档。",
    },
    "jobs": {"en": "Recent jobs", "zh": "最近的任务"},
    "cancel_job": {"en": "Cancel running job", "zh": "取消正在运行的任务"},
    "no_active_job": {"en": "No job of this knowledge base is queued or running.", "zh": "该知识库没有排队或运行中的任务。"},
    "job_cancelling": {
        "en": "Job `{job_id}` is being cancelled: it stops at its next file; the files it committed stay.",
        "zh": "正在取消任务 `{job_id}`：它会在下一个文件处停止，已提交的文件会保留。",
    },
    "col_job": {"en": "Job", "zh": "任务"},
    "col_kind": {"en": "Kind", "zh": "类型"},
    "col_progress": {"en": "Progress", "zh": "进度"},
    "col_started": {"en": "Started", "zh": "开始时间"},
    "col_result": {"en": "Result", "zh": "结果"},
    # conversations sidebar and feedback
    "conversations_title": {"en": "### Conversations", "zh": "### 对话记录"},
    "conversations": {"en": "Your conversations", "zh": "你的对话"},
    "untitled": {"en": "(untitled)", "zh": "（无标题）"},
    "conversation_title": {"en": "Title", "zh": "标题"},
    "rename": {"en": "Rename", "zh": "重命名"},
    "delete_conversation": {"en": "Delete", "zh": "删除"},
    "no_conversation": {"en": "Open or start a conversation first.", "zh": "请先打开或开始一个对话。"},
    "renamed": {"en": "Renamed.", "zh": "已重命名。"},
    "conversation_deleted": {"en": "Conversation deleted.", "zh": "对话已删除。"},
    "open_in_document": {"en": "Open in document ↗", "zh": "在文档中查看 ↗"},
    "not_rateable": {
        "en": "Only a stored answer can be rated (this one failed).",
        "zh": "只能评价已保存的回答（这个回答失败了）。",
    },
    "rated_up": {
        "en": "👍 Thanks, recorded. Add a comment below if you like.",
        "zh": "👍 谢谢，已记录。可以在下面补充意见。",
    },
    "rated_down": {
        "en": "👎 Thanks, recorded. What was wrong? Add a comment below if you like.",
        "zh": "👎 谢谢，已记录。哪里不对？可以在下面补充意见。",
    },
    "rating_kept": {
        "en": "The rating already given stays recorded; click 👍 or 👎 to change it.",
        "zh": "已给出的评价仍然保留；点击 👍 或 👎 可以更改。",
    },
    "rate_first": {"en": "Rate an answer with 👍 or 👎 first.", "zh": "请先用 👍 或 👎 评价一个回答。"},
    "comment_saved": {"en": "Comment saved.", "zh": "意见已保存。"},
    "feedback_comment": {"en": "Comment on your rating (optional)", "zh": "对评价的补充意见（可选）"},
    "send_feedback": {"en": "Save comment", "zh": "保存意见"},
    # filters
    "filter_title": {"en": "🔎 Narrow the search", "zh": "🔎 缩小检索范围"},
    "filter_tags": {"en": "Only documents tagged", "zh": "仅限带这些标签的文档"},
    "filter_tags_info": {"en": "A document must carry every tag chosen.", "zh": "文档须带有所选的全部标签。"},
    "filter_formats": {"en": "Only these formats", "zh": "仅限这些格式"},
    "filter_source": {"en": "Only sources matching (glob)", "zh": "仅限匹配的来源路径（通配符）"},
    "extra_kbs": {"en": "Also ask these knowledge bases", "zh": "同时检索这些知识库"},
    "extra_kbs_info": {
        "en": "Their passages are ranked together with the selected knowledge base's.",
        "zh": "它们的段落与所选知识库的段落一起排序。",
    },
    # document detail
    "tab_document": {"en": "🔍 Document detail", "zh": "🔍 文档详情"},
    "document": {"en": "Document", "zh": "文档"},
    "choose_document": {"en": "Choose a document to see its chunks.", "zh": "选择一个文档以查看其分块。"},
    "doc_title": {"en": "Title", "zh": "标题"},
    "doc_origin": {"en": "Origin", "zh": "来源方式"},
    "doc_tags": {"en": "Tags", "zh": "标签"},
    "doc_tags_edit": {"en": "Tags (comma-separated)", "zh": "标签（逗号分隔）"},
    "save_tags": {"en": "Save tags", "zh": "保存标签"},
    "tags_saved": {"en": "Tags saved.", "zh": "标签已保存。"},
    "chunks_title": {"en": "### Chunks, in order", "zh": "### 分块（按顺序）"},
    "more_chunks": {"en": "… and {n} more chunks not shown.", "zh": "… 另有 {n} 个分块未显示。"},
    # feedback (admin)
    "tab_feedback": {"en": "👍 Feedback", "zh": "👍 反馈"},
    "feedback_title": {
        "en": "### Recent feedback on answers\nEvery rated answer, newest first, with its question, sources and "
        "comment. Export them for `rag eval` with `rag feedback export --kb NAME FILE.jsonl`.",
        "zh": "### 最近的回答反馈\n所有被评价的回答（最新在前），附问题、来源和意见。"
        "用 `rag feedback export --kb NAME FILE.jsonl` 导出后可交给 `rag eval`。",
    },
    "feedback_rating": {"en": "Rating", "zh": "评价"},
    "rating_all": {"en": "all", "zh": "全部"},
    "rating_up": {"en": "👍 helpful", "zh": "👍 有帮助"},
    "rating_down": {"en": "👎 wrong or unhelpful", "zh": "👎 有误或无帮助"},
    "no_feedback": {"en": "No feedback yet.", "zh": "还没有反馈。"},
    "answer": {"en": "Answer", "zh": "回答"},
}

STATUS_TEXT: dict[str, dict[Lang, str]] = {
    "indexed": {"en": "✅ indexed", "zh": "✅ 已索引"},
    "error": {"en": "❌ error", "zh": "❌ 出错"},
    "failed": {"en": "❌ failed", "zh": "❌ 失败"},
    "queued": {"en": "⏳ queued", "zh": "⏳ 排队中"},
    "running": {"en": "🔄 running", "zh": "🔄 运行中"},
    "succeeded": {"en": "✅ succeeded", "zh": "✅ 成功"},
    "skipped": {"en": "⏭ skipped", "zh": "⏭ 已跳过"},
    "cancelled": {"en": "⏹ cancelled", "zh": "⏹ 已取消"},
}


def normalize_lang(value: str | None) -> Lang:
    return "zh" if value and value.lower().startswith("zh") else "en"


def t(lang: str, key: str, **values: Any) -> str:
    text = TEXT[key][normalize_lang(lang)]
    return text.format(**values) if values else text


def status_text(lang: str, status: str) -> str:
    return STATUS_TEXT.get(status, {}).get(normalize_lang(lang), status)


@dataclass
class Relabeler:
    """Remembers which text key fills which property of which component, to relabel them all at once."""

    bindings: list[tuple[gr.components.Component | gr.blocks.BlockContext, dict[str, str]]] = field(
        default_factory=list
    )

    def bind(self, component: Any, **properties: str) -> Any:
        """``bind(button, value="send")``: the component's ``value`` shows the text ``send``."""
        self.bindings.append((component, properties))
        return component

    @property
    def components(self) -> list[Any]:
        return [component for component, _ in self.bindings]

    def updates(self, lang: str) -> list[dict[str, Any]]:
        return [
            gr.update(**{prop: t(lang, key) for prop, key in props.items()}) for _, props in self.bindings
        ]
