"""Time to first token and decode speed of the chat backends on one ~1,000-token Chinese RAG prompt.

    .venv/bin/python benchmarks/bench_llm.py [--runs 3] [--max-tokens 128] [--tf-tokens 32]
        [--tf-dtype auto --tf-dtype bfloat16 --tf-dtype float32] [--skip-transformers] [--json]

Rows:
  xllamacpp raw         Server.handle_chat_completions called directly (same loaded model as ours)
  LlamaCppChatModel     our stream() over it (worker thread + queue)
  ... cached prefix     ours again, same sources, another question: the shared prefix comes from the KV cache
  transformers generate model.generate() on the transformers backend's model (same precision)
  TransformersChatModel our decode loop
Every run but the cached-prefix one starts with a unique line so the KV cache cannot help.
Tokens/s counts decode only: (tokens - 1) / (time of last token - time of first token).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.config import LLMSettings  # noqa: E402
from rag.llm import ChatMessage, GenerationParams, create_chat_model  # noqa: E402
from rag.llm.llamacpp import LlamaCppChatModel, build_request  # noqa: E402
from rag.prompts import render  # noqa: E402

CORPUS = ROOT.parent / "shared" / "datasets" / "cmrc-trial" / "corpus.jsonl"
FALLBACK_PASSAGE = (
    "成都是四川省的省会，位于四川盆地西部，是中国西南地区的科技、商贸、金融中心和交通枢纽。成都历史悠久，"
    "古蜀文明发祥地之一，三国时期为蜀汉都城。成都以美食闻名，火锅、串串香和担担面广受欢迎，"
    "2010年被联合国教科文组织评为美食之都。大熊猫繁育研究基地位于城北，每年吸引大量游客。"
)
QUESTION = "请根据上面的资料，逐条详细总结每一段资料的主要内容。"
OTHER_QUESTION = "请根据上面的资料，说明第一段资料讲的是什么。"


@dataclass(slots=True)
class Run:
    ttft: float
    tokens: int
    decode_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return (self.tokens - 1) / self.decode_seconds if self.tokens > 1 and self.decode_seconds > 0 else 0.0


def passages(limit_tokens: int, count: Callable[[str], int]) -> list[dict[str, Any]]:
    texts: list[str] = []
    if CORPUS.is_file():
        with CORPUS.open(encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
    texts = texts or [FALLBACK_PASSAGE] * 20
    chosen: list[dict[str, Any]] = []
    used = 0
    for n, text in enumerate(texts, 1):
        cost = count(text)
        if used + cost > limit_tokens:
            continue
        chosen.append({"n": len(chosen) + 1, "source": f"passage-{n}.txt", "page": None, "text": text})
        used += cost
        if used > limit_tokens - 60:
            break
    return chosen


def build_messages(sources: list[dict[str, Any]], question: str, nonce: str | None) -> list[ChatMessage]:
    system = render("system", "zh")
    if nonce:
        system = f"[run {nonce}]\n{system}"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": render("answer", "zh", question=question, sources=sources)},
    ]


def timed(pieces: Iterable[object], tokens: Callable[[], int]) -> Run:
    """Time a stream of text pieces; ``tokens`` tells afterwards how many tokens they held (a piece
    can hold several: a CJK character split over byte-level tokens arrives once it is whole)."""
    start = time.perf_counter()
    stamps = [time.perf_counter() for _ in pieces]
    return Run(stamps[0] - start, tokens(), stamps[-1] - stamps[0])


def raw_llamacpp(model: LlamaCppChatModel, messages: list[ChatMessage], params: GenerationParams) -> Run:
    stamps: list[float] = []
    timings: dict[str, Any] = {}

    def on_chunk(chunk: dict[str, Any]) -> bool:
        if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", ())):
            stamps.append(time.perf_counter())
        timings.update(chunk.get("timings", {}))
        return False

    start = time.perf_counter()
    model._server.handle_chat_completions(build_request(messages, params), on_chunk)
    return Run(stamps[0] - start, timings["predicted_n"], stamps[-1] - stamps[0])


def summarise(name: str, runs: list[Run]) -> dict[str, Any]:
    return {
        "backend": name,
        "ttft_s": statistics.median(r.ttft for r in runs),
        "tokens": statistics.median(r.tokens for r in runs),
        "tokens_per_s": statistics.median(r.tokens_per_second for r in runs),
        "runs": len(runs),
    }


def bench_llamacpp(home: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    model = create_chat_model(LLMSettings(), home)
    assert isinstance(model, LlamaCppChatModel)
    overhead = model.count_tokens("".join(m["content"] for m in build_messages([], QUESTION, "x")))
    sources = passages(args.prompt_tokens - overhead, model.count_tokens)
    prompt_tokens = model.count_tokens("".join(m["content"] for m in build_messages(sources, QUESTION, "x")))
    params = GenerationParams(temperature=0.0, max_tokens=args.max_tokens, repetition_penalty=1.0)
    "".join(model.stream(build_messages(sources, QUESTION, "warm-up"), params))
    raw, ours, cached = [], [], []
    for _ in range(args.runs):  # interleaved, so drifting machine load hits both alike
        raw.append(raw_llamacpp(model, build_messages(sources, QUESTION, uuid.uuid4().hex), params))
        llama_tokens = lambda: model.last_timings["predicted_n"]  # noqa: E731
        ours.append(timed(model.stream(build_messages(sources, QUESTION, uuid.uuid4().hex), params), llama_tokens))
        "".join(model.stream(build_messages(sources, QUESTION, "shared"), params))
        cached.append(timed(model.stream(build_messages(sources, OTHER_QUESTION, "shared"), params), llama_tokens))
    rows = [summarise("xllamacpp raw", raw), summarise("LlamaCppChatModel.stream", ours),
            summarise("... cached prefix, new question", cached)]
    return rows, sources, prompt_tokens


def bench_transformers(
    home: Path, sources: list[dict[str, Any]], dtype: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    import torch

    from rag.llm import BUNDLED_GGUF_NAME, bundled_gguf_path, models_dir
    from rag.llm.transformers_backend import TransformersChatModel

    started = time.perf_counter()
    gguf = bundled_gguf_path(models_dir(home))
    model = TransformersChatModel(str(gguf.parent), gguf_file=BUNDLED_GGUF_NAME, dtype=dtype,
                                  threads=LLMSettings().threads, cache_dir=models_dir(home))
    print(f"transformers backend loaded in {time.perf_counter() - started:.1f} s ({model.precision}, "
          f"{torch.get_num_threads()} threads)", file=sys.stderr)
    params = GenerationParams(temperature=0.0, max_tokens=args.tf_tokens, repetition_penalty=1.0)
    label = "int8" if model.int8 else str(model.dtype).removeprefix("torch.")

    def generate_run(messages: list[ChatMessage]) -> Run:
        from transformers.generation.streamers import BaseStreamer

        class Stamps(BaseStreamer):  # put() gets the prompt first, then each new token
            def __init__(self) -> None:
                self.times: list[float] = []

            def put(self, value: torch.Tensor) -> None:
                self.times.append(time.perf_counter())

            def end(self) -> None:
                pass

        input_ids = model.encode_chat(messages)
        stamps = Stamps()
        start = time.perf_counter()
        out = model.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                   max_new_tokens=args.tf_tokens, streamer=stamps)
        tokens = out.shape[1] - input_ids.shape[1]
        return Run(stamps.times[1] - start, tokens, stamps.times[-1] - stamps.times[1])

    produced: list[int] = []
    generate_ids = model.generate_ids

    def counting_generate_ids(*a: Any, **kw: Any) -> Iterator[int]:
        for token in generate_ids(*a, **kw):
            produced.append(token)
            yield token

    model.generate_ids = counting_generate_ids  # type: ignore[method-assign]
    ours, generate = [], []
    for _ in range(args.tf_runs):
        produced.clear()
        ours.append(timed(model.stream(build_messages(sources, QUESTION, uuid.uuid4().hex), params), produced.__len__))
        generate.append(generate_run(build_messages(sources, QUESTION, uuid.uuid4().hex)))
    return [summarise(f"transformers generate() ({label})", generate),
            summarise(f"TransformersChatModel.stream ({label})", ours)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("RAG_HOME", ".rag")))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=1000, help="prompt size to aim for, in tokens")
    parser.add_argument("--tf-tokens", type=int, default=32)
    parser.add_argument("--tf-runs", type=int, default=1)
    parser.add_argument("--tf-dtype", action="append", help="auto (default), int8, bfloat16, float32; repeatable")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rows, sources, prompt_tokens = bench_llamacpp(args.home, args)
    if not args.skip_transformers:
        for dtype in args.tf_dtype or ["auto"]:
            rows += bench_transformers(args.home, sources, dtype, args)
            gc.collect()
    report = {"prompt_tokens": prompt_tokens, "passages": len(sources), "cpus": os.cpu_count(),
              "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0], "rows": rows,
              "ours_vs_raw": {"ttft": rows[1]["ttft_s"] / rows[0]["ttft_s"],
                              "tokens_per_s": rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"prompt: ~{prompt_tokens} tokens ({len(sources)} CMRC passages + zh system/answer templates); "
          f"{os.cpu_count()} CPUs; load average {load_before:.1f} -> {report['load_avg_after']:.1f}")
    print(f"{'backend':<44} {'TTFT s':>8} {'tokens':>7} {'tok/s':>7}")
    for row in rows:
        print(f"{row['backend']:<44} {row['ttft_s']:>8.2f} {row['tokens']:>7.0f} {row['tokens_per_s']:>7.1f}")
    ratio = report["ours_vs_raw"]
    print(f"ours / raw: TTFT x{ratio['ttft']:.3f}, tokens/s x{ratio['tokens_per_s']:.3f}")


if __name__ == "__main__":
    main()
