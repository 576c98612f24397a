"""Supporting quotes: the source sentence an answer paraphrases is shown verbatim after it."""

from __future__ import annotations

from rag.evidence import Quote, split_sentences, supporting_quotes

SOURCES = [
    "尤金袋鼠分布在澳洲南部岛屿及西岸地区。尤金袋鼠共有三个亚种：尤金袋鼠很细小，约只有8公斤重，适合饲养。",
    "The Eiffel Tower is 330 metres tall. It was completed in 1889 as the entrance to the World's Fair.",
]


def test_a_paraphrase_is_followed_by_the_sentence_it_came_from() -> None:
    quotes = supporting_quotes("尤金袋鼠的体重大约是8公斤。[1]", SOURCES, "尤金袋鼠的体重大约是多少？")
    assert quotes == [Quote(1, "尤金袋鼠共有三个亚种：尤金袋鼠很细小，约只有8公斤重，适合饲养。")]


def test_a_wrong_number_still_points_at_the_real_sentence() -> None:
    quotes = supporting_quotes("The tower was completed in 1899. [2]", SOURCES)
    assert quotes == [Quote(2, "It was completed in 1889 as the entrance to the World's Fair.")]


def test_a_sentence_already_copied_in_full_is_not_repeated() -> None:
    answer = "尤金袋鼠分布在澳洲南部岛屿及西岸地区。[1]"
    assert supporting_quotes(answer, SOURCES, "尤金袋鼠分布在哪里？") == []


def test_an_answer_unlike_any_source_sentence_gets_no_quote() -> None:
    assert supporting_quotes("资料中没有提到这一点。", SOURCES) == []
    assert supporting_quotes("The documents do not cover this.", SOURCES) == []


def test_the_sentence_closest_to_the_question_follows_when_the_answer_strays() -> None:
    # The model copied the wrong sentence; the one that matches the question is quoted after it.
    answer = "尤金袋鼠分布在澳洲南部岛屿及西岸地区。[1]"
    quotes = supporting_quotes(answer, SOURCES, "尤金袋鼠有几个亚种？")
    assert quotes == [Quote(1, "尤金袋鼠共有三个亚种：尤金袋鼠很细小，约只有8公斤重，适合饲养。")]


def test_the_limit_keeps_the_first_matches() -> None:
    answer = "It is 330 m tall. It opened in 1889. Tammar wallabies weigh about 8 kg."
    quotes = supporting_quotes(answer, SOURCES, limit=1)
    assert quotes == [Quote(2, "The Eiffel Tower is 330 metres tall.")]


def test_sentences_split_on_chinese_and_english_ends_but_not_decimals() -> None:
    assert split_sentences("全长364.6公里。沿线有12站！Is it long? Yes. It is 3.5 km.") == [
        "全长364.6公里。", "沿线有12站！", "Is it long?", "Yes.", "It is 3.5 km.",
    ]
