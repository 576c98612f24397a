"""Load on one real server on localhost: 16 concurrent streaming chats and 50 concurrent searches.

    .venv/bin/python benchmarks/bench_server.py [--chats 16] [--searches 50] [--rounds 3] [--max-tokens 32]

Starts `rag serve` on a free port with a temporary RAG_HOME, builds a small KB, waits for the models,
then fires the requests and prints throughput and p50/p95 latency. Any error is counted and fails the run.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from api_server import start_server, wait_for_job  # noqa: E402

TOPICS = ["vacation policy", "expense reports", "laptop refresh", "parking permits", "security badges",
          "travel booking", "sick leave", "remote work", "on-call rotation", "office plants"]
QUERIES = [f"what is the rule for {topic}?" for topic in TOPICS] + ["how many vacation days", "hot pot in Chengdu"]
# Different questions for the mixed run, so llama.cpp's prompt cache does not flatter it.
MIXED_QUERIES = [f"Which desk answers questions about {topic}, and how fast?" for topic in TOPICS]


@dataclass
class Sample:
    seconds: float
    first_token: float | None = None
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def corpus() -> list[tuple[str, bytes]]:
    docs = []
    for i, topic in enumerate(TOPICS):
        for j in range(5):
            text = (f"# {topic.title()} ({j})\n\nThe {topic} rule number {i * 10 + j} says that requests are "
                    f"approved within {j + 2} working days by the {topic} desk, and exceptions need a manager's "
                    f"written approval. Contact desk {100 + i} for questions about {topic}.\n")
            docs.append((f"{topic.replace(' ', '_')}_{j}.md", text.encode()))
    return docs


def one_search(base: str, kb: str, query: str) -> Sample:
    started = time.perf_counter()
    try:
        response = requests.post(f"{base}/api/kbs/{kb}/search", json={"query": query, "top_k": 5}, timeout=120)
        error = None if response.status_code == 200 and response.json()["hits"] else f"{response.status_code}"
    except requests.RequestException as exc:
        error = type(exc).__name__
    return Sample(time.perf_counter() - started, error=error)


def one_chat(base: str, kb: str, question: str, max_tokens: int) -> Sample:
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=600, max_retries=0)
    started = time.perf_counter()
    first: float | None = None
    try:
        pieces = []
        finish = None
        for chunk in client.chat.completions.create(model=f"kb:{kb}", stream=True, max_tokens=max_tokens,
                                                    messages=[{"role": "user", "content": question}]):
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                first = first or time.perf_counter() - started
                pieces.append(delta)
            finish = chunk.choices[0].finish_reason if chunk.choices else finish
        error = None if pieces and finish == "stop" else f"empty answer or no stop (finish={finish})"
    except Exception as exc:  # counted, not raised: the run reports every failure
        error = f"{type(exc).__name__}: {exc}"
    return Sample(time.perf_counter() - started, first, error)


def report(name: str, samples: list[Sample], wall: float) -> int:
    ok = [s for s in samples if s.error is None]
    errors = [s.error for s in samples if s.error is not None]
    latencies = [s.seconds * 1000 for s in ok] or [0.0]
    line = (f"{name}: {len(samples)} requests, {len(errors)} errors, {len(ok) / wall:.2f} req/s, "
            f"p50 {percentile(latencies, 0.5):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms")
    firsts = [s.first_token * 1000 for s in ok if s.first_token is not None]
    if firsts:
        line += f", first token p50 {percentile(firsts, 0.5):.0f} ms / p95 {percentile(firsts, 0.95):.0f} ms"
    print(line, flush=True)
    for error in sorted(set(errors)):
        print(f"  error: {error}", flush=True)
    return len(errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=16)
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="search rounds (each fires --searches at once)")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        server = start_server(Path(tmp) / "home")
        try:
            base, kb = server.base_url, "bench"
            requests.post(f"{base}/api/kbs", json={"name": kb}, timeout=30).raise_for_status()
            files = [("files", (name, io.BytesIO(data))) for name, data in corpus()]
            job_id = requests.post(f"{base}/api/kbs/{kb}/documents", files=files, timeout=120).json()["job_id"]
            job = wait_for_job(base, job_id)
            ready = server.wait_ready()
            print(f"server {base}: {len(files)} documents ingested in {job['result']['seconds']:.1f} s "
                  f"({job['status']}), models warm in {ready['warm_up_seconds']:.1f} s", flush=True)

            failures = 0
            samples: list[Sample] = []
            started = time.perf_counter()
            for _ in range(args.rounds):
                with ThreadPoolExecutor(args.searches) as pool:
                    samples += list(pool.map(lambda i: one_search(base, kb, QUERIES[i % len(QUERIES)]),
                                             range(args.searches)))
            failures += report(f"search x{args.searches} concurrent x{args.rounds} rounds", samples,
                               time.perf_counter() - started)

            started = time.perf_counter()
            with ThreadPoolExecutor(args.chats) as pool:
                chats = list(pool.map(lambda i: one_chat(base, kb, QUERIES[i % len(QUERIES)], args.max_tokens),
                                      range(args.chats)))
            failures += report(f"streaming chat x{args.chats} concurrent (max_tokens={args.max_tokens})", chats,
                               time.perf_counter() - started)

            # Searches stay concurrent while the LLM is busy: run both at once.
            started = time.perf_counter()
            with ThreadPoolExecutor(args.chats + args.searches) as pool:
                chat_futures = [pool.submit(one_chat, base, kb, f"{MIXED_QUERIES[i % len(MIXED_QUERIES)]} ({i})",
                                            args.max_tokens)
                                for i in range(args.chats)]
                time.sleep(1.0)
                search_futures = [pool.submit(one_search, base, kb, QUERIES[i % len(QUERIES)])
                                  for i in range(args.searches)]
                mixed_searches = [f.result() for f in search_futures]
                search_wall = time.perf_counter() - started
                mixed_chats = [f.result() for f in chat_futures]
            failures += report("mixed: searches during the chats", mixed_searches, search_wall)
            failures += report("mixed: the chats", mixed_chats, time.perf_counter() - started)
        finally:
            server.stop()
    print("OK: zero errors" if failures == 0 else f"FAILED: {failures} errors", flush=True)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
