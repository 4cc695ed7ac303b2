"""The on-topic judge of a plan: does every step share a content word with the task? Any script, rerunnable.

A plan decoded under the plan schema is always valid JSON, but a small model sometimes fills it with something
else (dates, lists of numbers); such a plan is not used. The judge is a rule a reader can apply by hand:

* a *word* is a run of letters, marks and digits (Unicode categories L, M, N), so `température`, `молоко` and
  `हिन्दी` are one word each; camel case is split (`ComputeArea` is two words);
* in a script written without spaces between words (Han, kana, Hangul's particles glued to nouns, Thai, Lao,
  Khmer, Myanmar) a run of its characters gives its **character bigrams** (`计算价格` gives 计算, 算价, 价格), and a
  run of one character gives that character;
* other words count when they have three characters or more and are not a stopword (a short list of function
  words of English, French, Spanish, German and Russian, and Chinese connectives such as 然后);
* a step is on topic when one of its content words or bigrams is one of the task's, compared in case-folded form.

Pure: no I/O.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence

STOPWORD_TEXT = (
    # English
    "the a an and or of to in on for with then than that this is are be by as at from it its their them into "
    "what which how why when who whose each every all any some two three four five first second third finally "
    "after before also give list write make find explain describe compare "
    # French
    "les des une que qui quoi pour avec dans sur par puis est sont ensuite aux ces son ses leur leurs plus "
    "cette comme mais donc être faire dire quel quelle quels combien "
    # Spanish
    "los las una por con para que del como pero más luego después cuál cuánto cuántos "
    # German
    "der die das und den dem des ein eine einer mit für von auf ist sind dann wie was welche "
    # Russian
    "что это как для его она они или при затем потом все был так ещё уже чем сколько какой какие "  # noqa: RUF001 Cyrillic on purpose
    # Chinese connectives and question words (bigrams)
    "然后 首先 最后 接着 并且 以及 什么 怎么 如何 一个 这个 那个 多少 是否"
)
STOPWORDS = frozenset(word.casefold() for word in STOPWORD_TEXT.split())
MIN_WORD_CHARS = 3
_CAMEL_CASE = re.compile(r"([a-z0-9])([A-Z])")
_UNSPACED = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x31FF),  # kana, bopomofo, kanbun
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)


def content_words(text: str) -> set[str]:
    """The words (and, in scripts without spaces, character bigrams) of a text that carry its subject."""
    found: set[str] = set()
    for word in _words(_CAMEL_CASE.sub(r"\1 \2", text)):
        for unspaced, run in itertools.groupby(word, _is_unspaced):
            part = "".join(run).casefold()
            if unspaced:
                found.update(_bigrams(part))
            elif len(part) >= MIN_WORD_CHARS:
                found.add(part)
    return found - STOPWORDS


def plan_is_on_topic(steps: Sequence[str], query: str) -> bool:
    """Whether every step shares a content word with the query (a plan with no step is not)."""
    return bool(steps) and not off_topic_steps(steps, query)


def off_topic_steps(steps: Sequence[str], query: str) -> list[int]:
    """The positions (from 1) of the steps that share no content word with the query."""
    words = content_words(query)
    return [position for position, step in enumerate(steps, 1) if not content_words(step) & words]


def off_topic_reason(steps: Sequence[str], query: str) -> str:
    """Why a plan was not used, for the trace: which of its steps are about something else."""
    off = off_topic_steps(steps, query)
    named = ", ".join(str(position) for position in off)
    subject = f"steps {named} of {len(steps)} share" if len(off) > 1 else f"step {named} of {len(steps)} shares"
    return f"off topic: {subject} no word with the task"


def _words(text: str) -> Iterator[str]:
    """Runs of letters, marks and digits, in any script."""
    for is_word, run in itertools.groupby(text, lambda char: unicodedata.category(char)[0] in "LMN"):
        if is_word:
            yield "".join(run)


def _is_unspaced(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _UNSPACED)


def _bigrams(run: str) -> set[str]:
    return {run[index : index + 2] for index in range(len(run) - 1)} if len(run) > 1 else {run}
