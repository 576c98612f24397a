"""Filters and several KBs over the real server: a filter is applied inside the index search, so one that
matches 1% of a KB's documents still returns a full top-k; several KBs fuse into one ranking; key scopes."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
import requests
from api_server import RunningServer, start_server

KEYS = {"admin": "adm-flt-1234", "reader": "rdr-flt-5678"}
RAG_API_KEYS = f"{KEYS['admin']}:admin;{KEYS['reader']}:reader:corpus:corpus-reader"
QUERY = "quarterly budget report for travel and training"
COMMON = 99  # short documents that answer QUERY well
RARE = "archive/budget-history.txt"  # 1 document of 100 (1%), several chunks, that answers it less well
TOP_K = 5


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def _rare_text() -> str:
    return "\n\n".join(f"In {year} the archived printing project had a small budget. " + " ".join(
        f"Item {n} of {year}: paper, toner and binding were bought for the archive." for n in range(15))
        for year in range(2015, 2022))


def upload(base: str, kb: str, files: dict[str, str]) -> None:
    parts = [("files", (name, io.BytesIO(text.encode()))) for name, text in files.items()]
    uploaded = requests.post(f"{base}/api/kbs/{kb}/documents?wait=true", files=parts, headers=auth("admin"),
                             timeout=600)
    assert uploaded.status_code == 201, uploaded.text
    assert not uploaded.json()["failed"], uploaded.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, float]]:
    # No answers are generated here: an OpenAI-compatible LLM that is never called spares loading the local one.
    env = {"RAG_API_KEYS": RAG_API_KEYS, "RAG_LLM__BACKEND": "openai", "RAG_LLM__BASE_URL": "http://127.0.0.1:9/v1"}
    running = start_server(tmp_path_factory.mktemp("filters") / "home", env, timeout=300)
    try:  # a failed or timed-out set-up still stops the server
        base = running.base_url
        for kb in ("corpus", "second"):
            created = requests.post(f"{base}/api/kbs", json={"name": kb}, headers=auth("admin"), timeout=30)
            assert created.status_code == 201, created.text
        upload(base, "corpus", {f"reports/report-{i:03}.md": f"# Quarterly budget report {i}\n\nThe quarterly budget "
                                f"report of team {i} covers travel, equipment and training for quarter {i % 4 + 1}.\n"
                                for i in range(COMMON)})
        time.sleep(1.1)
        boundary = time.time()  # the rare document is indexed after this instant, the others before
        time.sleep(0.1)
        upload(base, "corpus", {RARE: _rare_text()})
        upload(base, "second", {"plan.md": "# Budget plan\n\nThe second KB's quarterly budget report for travel.\n",
                                "menu.md": "# Canteen\n\nThe canteen serves noodles on Mondays.\n"})
        yield running, boundary
    finally:
        running.stop()


def search(running: RunningServer, body: dict[str, object], kb: str | None = "corpus",
           who: str = "admin") -> requests.Response:
    url = f"{running.base_url}/api/kbs/{kb}/search" if kb else f"{running.base_url}/api/search"
    return requests.post(url, json={"query": QUERY, "top_k": TOP_K, **body}, headers=auth(who), timeout=120)


def sources(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["source"] for hit in response.json()["hits"]]


def test_a_filter_matching_one_percent_of_the_kb_still_returns_a_full_top_k(
        server: tuple[RunningServer, float]) -> None:
    running, _ = server
    unfiltered = sources(search(running, {}))
    assert len(unfiltered) == TOP_K
    # Cutting the unfiltered top-k afterwards would leave (almost) nothing of the rare document ...
    assert unfiltered.count(RARE) <= 1
    # ... the filter inside the index search returns a full top-k of its chunks.
    for where in ({"source": "archive/*"}, {"source": "*history*"}, {"format": "TXT"}, {"format": [".txt", "pdf"]}):
        assert sources(search(running, {"filter": where})) == [RARE] * TOP_K, where
    # The same over /api/search, and every hit names its KB.
    hits = search(running, {"kbs": ["corpus"], "filter": {"source": "archive/*"}}, kb=None).json()["hits"]
    assert [(hit["kb"], hit["source"]) for hit in hits] == [("corpus", RARE)] * TOP_K


def test_filters_combine_and_match_dates(server: tuple[RunningServer, float]) -> None:
    running, boundary = server
    assert sources(search(running, {"filter": {"modified_after": boundary}})) == [RARE] * TOP_K
    before = sources(search(running, {"filter": {"modified_before": boundary}}))
    assert len(before) == TOP_K and RARE not in before
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(boundary + 3600))
    assert sources(search(running, {"filter": {"modified_after": iso}})) == []  # nothing indexed an hour later
    assert len(sources(search(running, {"filter": {"modified_after": "2000-01-01"}}))) == TOP_K
    # Every condition must hold: Markdown documents under archive/ do not exist.
    assert sources(search(running, {"filter": {"source": "archive/*", "format": "md"}})) == []
    only_reports = sources(search(running, {"filter": {"source": "reports/report-00?.md"}}))
    assert len(only_reports) == TOP_K and all(s.startswith("reports/report-00") for s in only_reports)


def test_bad_filters_are_a_422_naming_the_field(server: tuple[RunningServer, float]) -> None:
    running, _ = server
    cases = {
        "filter.colour": {"colour": "red"},
        "filter.modified_after": {"modified_after": "yesterday"},
        "filter.tags": {"tags": "finance"},
        "filter.source": {"source": ""},
    }
    for field, where in cases.items():
        for kb in ("corpus", None):
            response = search(running, {"filter": where, **({} if kb else {"kbs": ["corpus"]})}, kb=kb)
            assert response.status_code == 422, (where, response.text)
            assert field in response.json()["error"]["message"], response.text
    backwards = search(running, {"filter": {"modified_after": "2025-02-01", "modified_before": "2025-01-01"}})
    assert backwards.status_code == 422 and "filter.modified_after" in backwards.json()["error"]["message"]


def test_several_kbs_fuse_into_one_ranking_and_keys_are_scoped(server: tuple[RunningServer, float]) -> None:
    running, _ = server
    response = search(running, {"kbs": ["corpus", "second"], "explain": True}, kb=None)
    hits = response.json()["hits"]
    assert len(hits) == TOP_K
    # Reciprocal rank fusion: each KB's best hit comes first, in the order the KBs were given.
    assert [(hit["kb"], hit["source"]) for hit in hits[:2]] == [("corpus", sources(search(running, {}))[0]),
                                                                 ("second", "plan.md")]
    assert [hit["explain"]["kbs"]["rank"] for hit in hits] == list(range(1, TOP_K + 1))
    assert {hit["kb"] for hit in hits} == {"corpus", "second"}
    # A filter applies to each KB.
    filtered = search(running, {"kbs": ["second", "corpus"], "filter": {"source": "*.md", "format": "md"}}, kb=None)
    assert RARE not in sources(filtered)
    # A key limited to "corpus" may search it, but not together with "second": 403 naming that KB.
    assert sources(search(running, {"kbs": ["corpus"]}, kb=None, who="reader"))
    refused = search(running, {"kbs": ["corpus", "second"]}, kb=None, who="reader")
    assert refused.status_code == 403 and "'second'" in refused.json()["error"]["message"]
    missing = search(running, {"kbs": ["corpus", "nokb"]}, kb=None)
    assert missing.status_code == 404 and "nokb" in missing.json()["error"]["message"]
    assert search(running, {"kbs": []}, kb=None).status_code == 422
    bad_name = search(running, {"kbs": ["no/such"]}, kb=None)
    assert bad_name.status_code == 422


def test_single_kb_hits_keep_the_contract_shape(server: tuple[RunningServer, float]) -> None:
    running, _ = server
    hits = search(running, {}).json()["hits"]
    assert all(set(hit) <= {"chunk_id", "doc_id", "source", "page", "text", "score", "heading"} for hit in hits)
    assert all("kb" not in hit for hit in hits)


def test_tags_set_with_patch_narrow_the_search(server: tuple[RunningServer, float]) -> None:
    running, _ = server
    base = running.base_url
    documents = requests.get(f"{base}/api/kbs/corpus/documents", headers=auth("admin"), timeout=30).json()["documents"]
    by_source = {doc["source"]: doc["doc_id"] for doc in documents}
    tagged = {"reports/report-010.md": ["finance"], "reports/report-020.md": ["finance", "2025"],
              "reports/report-030.md": ["finance"]}
    for source, tags in tagged.items():
        patched = requests.patch(f"{base}/api/kbs/corpus/documents/{by_source[source]}", json={"tags": tags},
                                 headers=auth("admin"), timeout=30)
        assert patched.status_code == 200, patched.text
    assert sorted(sources(search(running, {"filter": {"tags": ["finance"]}}))) == sorted(tagged)
    assert sources(search(running, {"filter": {"tags": ["finance", "2025"]}})) == ["reports/report-020.md"]
    assert sources(search(running, {"filter": {"tags": ["finance"], "source": "*-03?.md"}})) == ["reports/report-030.md"]
    assert sources(search(running, {"filter": {"tags": ["unknown"]}})) == []


def test_the_python_client_searches_several_kbs_with_a_filter(server: tuple[RunningServer, float]) -> None:
    from rag.client import RagClient

    running, _ = server
    with RagClient(running.base_url, api_key=KEYS["admin"]) as client:
        found = client.search_many(["corpus", "second"], QUERY, top_k=3, filter={"source": "*plan*"})
        assert [(hit.kb, hit.source) for hit in found.hits] == [("second", "plan.md")]
        narrowed = client.search("corpus", QUERY, top_k=TOP_K, filter={"format": "txt"})
        assert [hit.source for hit in narrowed.hits] == [RARE] * TOP_K
