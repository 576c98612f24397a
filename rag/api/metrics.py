"""Prometheus metrics, one registry per app: requests and latency per route, search, chat and ingest timings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_INGEST_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rag_http_requests", "HTTP requests handled.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("rag_http_request_duration_seconds",
                                 "Time from request to the last byte of the response.",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.search = Histogram("rag_search_duration_seconds", "One knowledge-base search.",
                                buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.chat = Histogram("rag_chat_duration_seconds", "One chat answer, retrieval and generation.",
                              ["endpoint"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.ingest = Histogram("rag_ingest_duration_seconds", "One ingest or sync job.",
                                ["kind"], buckets=_INGEST_BUCKETS, registry=self.registry)
        self.ingest_files = Counter("rag_ingest_files", "Files processed by ingest and sync jobs.",
                                    ["outcome"], registry=self.registry)
        self.jobs = Counter("rag_jobs", "Background jobs finished.", ["kind", "status"], registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
