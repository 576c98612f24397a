from ingest.language import detect_language, estimate_tokens
from ingest.models import ParsedDocument, Section
from ingest.splitter import Splitter


def _split(text: str, tokens: int = 64, overlap: int = 8, **section: object):
    doc = ParsedDocument(source="x", sections=[Section(text=text, **section)], format="txt")
    return Splitter(tokens, overlap).split_document(doc)


def test_english_chunks_are_bounded_and_end_at_sentences() -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(80))
    chunks = _split(text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 64
        assert chunk.text.endswith(".")
        assert chunk.language == "en"


def test_chinese_chunks_end_at_chinese_sentence_marks() -> None:
    text = "".join(f"这是第{i}个句子，它描述了一个主题。" for i in range(60))
    chunks = _split(text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert estimate_tokens(chunk.text) <= 64
        assert chunk.text.endswith("。")
        assert chunk.language == "zh"


def test_consecutive_chunks_overlap() -> None:
    text = " ".join(f"Fact {i} is short." for i in range(100))
    chunks = _split(text, tokens=40, overlap=10)
    first_sentence_of_second = chunks[1].text.split(".")[0] + "."
    assert first_sentence_of_second in chunks[0].text


def test_heading_and_page_travel_with_each_chunk() -> None:
    chunks = _split("Body text. " * 50, heading="Guide > Install", page=3)
    assert {c.heading for c in chunks} == {"Guide > Install"}
    assert {c.page for c in chunks} == {3}
    assert chunks[0].index_text.startswith("Guide > Install\n")


def test_table_chunks_repeat_the_header_row() -> None:
    rows = "\n".join(f"| item {i} | {i * 10} |" for i in range(60))
    table = "| name | price |\n| --- | --- |\n" + rows
    chunks = _split(table, tokens=60, overlap=5, is_table=True)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith("| name | price |\n| --- | --- |")


def test_short_text_is_one_chunk() -> None:
    assert [c.text for c in _split("Just one line.")] == ["Just one line."]


def test_language_detection() -> None:
    assert detect_language("成都的火锅很好吃") == "zh"
    assert detect_language("Hot pot in Chengdu") == "en"
    assert detect_language("GPU 加速训练模型的方法") == "zh"
