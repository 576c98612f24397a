from rag.retrieve.tokenize import Tokenizer, default_tokenizer


def test_english_is_lowercased_stemmed_and_stopword_free() -> None:
    assert default_tokenizer("The Running dogs were barking") == ["run", "dog", "bark"]


def test_chinese_is_segmented_with_search_mode_subwords() -> None:
    tokens = default_tokenizer("中华人民共和国成立")
    assert "人民" in tokens and "共和国" in tokens and "成立" in tokens
    assert "的" not in default_tokenizer("我的书")


def test_mixed_text_routes_each_run_to_its_tokenizer() -> None:
    tokens = default_tokenizer("使用GPU加速 training models")
    assert tokens[:1] == ["使用"]
    assert "gpu" in tokens and "加速" in tokens and "train" in tokens and "model" in tokens


def test_options_switch_off_stemming_and_stopwords() -> None:
    assert Tokenizer(stem=False, stopwords=False)("The dogs") == ["the", "dogs"]
