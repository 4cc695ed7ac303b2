# ruff: noqa: RUF001  (text in other scripts on purpose: Cyrillic letters and CJK punctuation)
"""The on-topic judge of plans, in any script: words in scripts with spaces, character bigrams in scripts without."""

from __future__ import annotations

import pytest

from router.topic import content_words, off_topic_reason, off_topic_steps, plan_is_on_topic

ENGLISH = "First find the prime factors of 360, then add them up, then say whether the sum is prime."
FRENCH = "Convertis 72 degrés Fahrenheit en Celsius, puis dis si la température permet de nager dehors."
RUSSIAN = "Найди простые множители числа 360, затем вычисли их сумму и скажи, простая ли она."
CHINESE = "先计算三支笔的价格，然后算出找零多少钱。"

JUDGED = [
    (ENGLISH, ["Find the prime factors of 360", "Add the factors"], True),
    (ENGLISH, ["2018-08-28 13:12:13"], False),
    (ENGLISH, ["FindPrimeFactors", "AddThem"], True),  # camel case is split into words
    (ENGLISH, ["Prime factors of 360", "first subtask"], False),
    (ENGLISH, [], False),
    (FRENCH, ["Convertir 72 degrés en Celsius", "Juger si la température permet de nager"], True),
    (FRENCH, ["1. 3. 5. 7.", "Calculer la température"], False),
    (FRENCH, ["Dis puis les", "la de si"], False),  # function words and short words share nothing
    (RUSSIAN, ["Найти простые множители 360", "Вычислить сумму множителей"], True),
    (RUSSIAN, ["Find the prime factors", "Сумма"], False),  # words compare whole: сумма is not сумму
    (CHINESE, ["计算三支笔的价格", "算出找零"], True),
    (CHINESE, ["写一首关于秋天的诗"], False),
    (CHINESE, ["然后", "首先"], False),  # connectives are stopwords in Chinese too
    (CHINESE, ["Compute the price of three pens"], False),
]


@pytest.mark.parametrize(("query", "steps", "on_topic"), JUDGED)
def test_a_plan_is_on_topic_when_every_step_shares_a_content_word(query: str, steps: list[str], on_topic: bool) -> None:
    assert plan_is_on_topic(steps, query) is on_topic


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Compute the AREA of 3 circles", {"compute", "area", "circles"}),
        ("la température de l'eau", {"température", "eau"}),
        ("Вычислите СУММУ", {"вычислите", "сумму"}),
        ("计算价格", {"计算", "算价", "价格"}),
        ("笔", {"笔"}),  # a run of one character is the character
        ("hindi हिन्दी", {"hindi", "हिन्दी"}),  # vowel signs are marks: one word
        ("Berechne die Straße", {"berechne", "strasse"}),  # case folded: ß is ss
    ],
)
def test_content_words_in_many_scripts(text: str, words: set[str]) -> None:
    assert words <= content_words(text)


def test_short_words_and_stopwords_carry_no_subject() -> None:
    assert content_words("the of and puis les что 然后") == set()


def test_the_reason_names_the_off_topic_steps() -> None:
    steps = ["计算三支笔的价格", "2018", "写诗"]
    assert off_topic_steps(steps, CHINESE) == [2, 3]
    assert off_topic_reason(steps, CHINESE) == "off topic: steps 2, 3 of 3 share no word with the task"
