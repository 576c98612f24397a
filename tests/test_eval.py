"""`rag eval` on small BEIR folders the test writes: metrics are computed from real retrieval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.evaluate import answer_f1, ndcg_at, normalise_answer, run_eval

EN_DOCS = {
    "d1": ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into glucose and oxygen."),
    "d2": ("Volcanoes", "Magma rises through the crust and erupts as lava, ash and volcanic gases."),
    "d3": ("Tides", "The gravitational pull of the moon causes the oceans to rise and fall twice a day."),
    "d4": ("Antibiotics", "Penicillin kills bacteria by blocking the synthesis of their cell walls."),
}
EN_QUERIES = {
    "q1": ("how do plants make glucose from sunlight", "d1"),
    "q2": ("what makes lava erupt from the crust", "d2"),
    "q3": ("why does the sea level rise and fall each day", "d3"),
    "q4": ("how does penicillin kill bacteria", "d4"),
}
ZH_DOCS = {
    "z1": ("长城", "长城是中国古代的军事防御工程，总长度超过两万公里。"),
    "z2": ("大熊猫", "大熊猫主要生活在四川的山区，以竹子为主要食物。"),
    "z3": ("西湖", "西湖位于杭州，是中国著名的风景名胜区。"),
}
ZH_QUERIES = {"y1": ("长城总长度是多少？", "z1", "两万公里"), "y2": ("大熊猫吃什么？", "z2", "竹子"),
              "y3": ("西湖在哪个城市？", "z3", "杭州")}


def _write_beir(folder: Path, docs: dict, queries: dict, answers: dict | None = None) -> Path:  # type: ignore[type-arg]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "title": t, "text": x}, ensure_ascii=False) for k, (t, x) in docs.items()))
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": k, "text": v[0]}, ensure_ascii=False) for k, v in queries.items()))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(f"{k}\t{v[1]}\t1" for k, v in queries.items()))
    if answers:
        (folder / "answers.jsonl").write_text(
            "\n".join(json.dumps({"_id": k, "answers": [a]}, ensure_ascii=False) for k, a in answers.items()))
    return folder


def test_english_dataset_all_modes(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _write_beir(tmp_path / "tiny-en", EN_DOCS, EN_QUERIES)
    for mode in ("bm25", "dense", "hybrid"):
        result = run_eval(service, folder, mode=mode)
        assert result["queries"] == 4 and result["dataset"] == "tiny-en"
        assert result["ndcg@10"] >= 0.9, (mode, result)
        assert result["recall@100"] == 1.0
        assert 0 < result["p50_ms"] <= result["p95_ms"]
    documents = service.list_documents("eval-tiny-en")
    assert sorted(d.doc_id for d in documents) == ["d1", "d2", "d3", "d4"]  # doc_id is the corpus _id


def test_chinese_dataset_reports_answer_recall(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    answers = {k: v[2] for k, v in ZH_QUERIES.items()}
    folder = _write_beir(tmp_path / "tiny-zh", ZH_DOCS, ZH_QUERIES, answers)
    result = run_eval(service, folder)
    assert result["ndcg@10"] == 1.0
    assert result["answer_recall@5"] == 1.0


def test_limit_and_missing_split(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from rag.errors import InvalidInput

    folder = _write_beir(tmp_path / "tiny", EN_DOCS, EN_QUERIES)
    assert run_eval(service, folder, limit=2)["queries"] == 2
    with pytest.raises(InvalidInput, match="train.tsv"):
        run_eval(service, folder, split="train")


def test_metric_helpers() -> None:
    assert ndcg_at(["a", "b"], {"a": 1}, 10) == 1.0
    assert round(ndcg_at(["x", "a"], {"a": 1}, 10), 4) == round(1 / 1.5849625, 4)
    assert normalise_answer("  364.6 公里！") == "3646公里"  # punctuation goes, as CONTRACT.md says
    assert answer_f1("364.6公里", ["364.6公里"]) == 1.0
    assert 0 < answer_f1("大约364.6", ["364.6公里"]) < 1
    assert answer_f1("", ["x"]) == 0.0


def test_exact_match_and_rouge_l_for_chinese_and_english() -> None:
    from rag.evaluate import answer_em, answer_rouge_l

    assert answer_em("364.6公里。[1]", ["364.6公里"]) and not answer_em("全长364.6公里", ["364.6公里"])
    assert answer_rouge_l("364.6公里", ["364.6公里"]) == 1.0
    # Characters are the tokens of Chinese: 4 of the answer's 8 characters are the gold's 4.
    assert round(answer_rouge_l("全长大约二十公里", ["二十公里"]), 4) == round(2 * 1.0 * 0.5 / 1.5, 4)
    assert round(answer_rouge_l("It takes 55 minutes. [1]", ["55 minutes"]), 4) == round(2 * 0.5 * 1 / 1.5, 4)
    assert answer_rouge_l("", ["x"]) == 0.0
