"""Capability vocabulary, requirement inference and the agent/requirement match score.

The vocabulary is the seed's twelve tags. Free-form tags from beacons and planners are mapped onto it by
`normalize_tag`; subtask texts get tags from keywords by `infer_requirements`. `match_score` is mostly tag
overlap (the share of required tags the agent covers) plus a light text similarity: the cosine of hashed
bag-of-words and character-trigram vectors of the requirement and of the agent's capabilities and persona.
Hashing uses CRC32 and fixed arithmetic, never Python's salted `hash`, so scores are identical across runs.

`match_scores` is the vectorised form used by screening: agent profiles are cached, so scoring 64 agents
costs a few matrix-vector products.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CAPABILITIES: tuple[str, ...] = (
    "mathematical-reasoning",
    "verification",
    "planning",
    "code-implementation",
    "debugging",
    "data-collection",
    "retrieval",
    "fact-checking",
    "summarization",
    "writing",
    "tool-use",
    "analysis",
)
CAPABILITY_INDEX: dict[str, int] = {name: index for index, name in enumerate(CAPABILITIES)}

# Keys are in normalised spelling (lower case, words joined by "-").
SYNONYMS: dict[str, str] = {
    "math": "mathematical-reasoning",
    "maths": "mathematical-reasoning",
    "mathematics": "mathematical-reasoning",
    "arithmetic": "mathematical-reasoning",
    "algebra": "mathematical-reasoning",
    "calculation": "mathematical-reasoning",
    "reasoning": "mathematical-reasoning",
    "math-reasoning": "mathematical-reasoning",
    "verify": "verification",
    "checking": "verification",
    "validation": "verification",
    "proof-checking": "verification",
    "plan": "planning",
    "decomposition": "planning",
    "task-decomposition": "planning",
    "code": "code-implementation",
    "coding": "code-implementation",
    "programming": "code-implementation",
    "implementation": "code-implementation",
    "software": "code-implementation",
    "python": "code-implementation",
    "debug": "debugging",
    "bug-fixing": "debugging",
    "troubleshooting": "debugging",
    "scraping": "data-collection",
    "crawling": "data-collection",
    "data-gathering": "data-collection",
    "search": "retrieval",
    "lookup": "retrieval",
    "information-retrieval": "retrieval",
    "rag": "retrieval",
    "fact-check": "fact-checking",
    "factchecking": "fact-checking",
    "fact-verification": "fact-checking",
    "summarize": "summarization",
    "summarise": "summarization",
    "summarisation": "summarization",
    "summary": "summarization",
    "write": "writing",
    "composition": "writing",
    "creative-writing": "writing",
    "drafting": "writing",
    "tools": "tool-use",
    "tool-calling": "tool-use",
    "function-calling": "tool-use",
    "tooluse": "tool-use",
    "analytics": "analysis",
    "analyze": "analysis",
    "analyse": "analysis",
    "data-analysis": "analysis",
}

# Regular-expression fragments per capability for `infer_requirements`; each is matched at a word start
# in the lower-cased text, so "comput" finds "compute" and "computation".
KEYWORDS: dict[str, tuple[str, ...]] = {
    "mathematical-reasoning": (
        "comput",
        "calculat",
        "solve",
        "equation",
        r"sum\b",
        r"product\b",
        "multipl",
        "divid",
        "integral",
        "derivative",
        "probabilit",
        "arithmetic",
        "math",
        "percent",
        "how many",
        "how much",
        "average",
    ),
    "verification": ("verif", r"check\b", "double-check", "validat", "confirm", "prove", "proof"),
    "planning": (r"plan\b", "planning", "decompos", "break down", "schedul", "steps to"),
    "code-implementation": (
        "code",
        "python",
        "javascript",
        "implement",
        "program",
        "script",
        "algorithm",
        r"sql\b",
        r"(?:a|the) function\b",
        "regex",
    ),
    "debugging": ("debug", r"bugs?\b", r"fix", "error", "traceback", "exception", "crash"),
    "data-collection": ("collect", "gather", "scrap", "crawl", "download"),
    "retrieval": ("search", "look up", "lookup", "retriev", r"who\b", r"when\b", r"where\b"),
    "fact-checking": ("fact", "true or false", "is it true", r"accura", "claim"),
    "summarization": ("summar", r"tl;?dr", "condens", "brief overview"),
    "writing": (r"write\b", "essay", "draft", "poem", "story", "letter", "compos", "rewrit"),
    "tool-use": (r"tools?\b", r"api\b", "invoke", "execute", "run the"),
    "analysis": ("analy", "compar", "evaluat", "assess", "explain why", "interpret"),
}

TEXT_DIMENSION = 256
TAG_WEIGHT = 0.8
TEXT_WEIGHT = 1.0 - TAG_WEIGHT
_MATH_EXPRESSION = re.compile(r"\d\s*[-+*/^x\u00d7\u00f7=]\s*\d")  # \u00d7 and \u00f7 are the times and divide signs
_WORD = re.compile(r"[a-z0-9]+")
_KEYWORD_PATTERNS: dict[str, re.Pattern[str]] = {
    tag: re.compile(r"\b(?:" + "|".join(fragments) + ")") for tag, fragments in KEYWORDS.items()
}


def normalize_tag(tag: str) -> str | None:
    """Map a free-form capability tag onto the vocabulary, or return None when it is unknown.

    Matching ignores case, surrounding space, and whether words are joined by spaces, "_" or "-".
    """
    key = re.sub(r"[\s_\-]+", "-", tag.strip().lower()).strip("-")
    if key in CAPABILITY_INDEX:
        return key
    return SYNONYMS.get(key)


def normalize_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Normalise tags, dropping unknown ones and duplicates while keeping the first-seen order."""
    seen: dict[str, None] = {}
    for tag in tags:
        normalized = normalize_tag(tag)
        if normalized is not None:
            seen.setdefault(normalized, None)
    return tuple(seen)


def infer_requirements(text: str) -> list[str]:
    """Guess the capability tags a subtask needs from keywords in its text, in vocabulary order."""
    lowered = text.lower()
    found = [tag for tag, pattern in _KEYWORD_PATTERNS.items() if pattern.search(lowered)]
    if _MATH_EXPRESSION.search(lowered) and "mathematical-reasoning" not in found:
        found.append("mathematical-reasoning")
    if "code-implementation" in found and "writing" in found:
        # "write a function" asks for code, not prose.
        found.remove("writing")
    return sorted(found, key=CAPABILITY_INDEX.__getitem__)


@lru_cache(maxsize=512)
def text_vector(text: str) -> np.ndarray:
    """Return the unit-length hashed bag-of-words plus character-trigram vector of `text` (read-only)."""
    lowered = text.lower()
    vector = np.zeros(TEXT_DIMENSION)
    for word in _WORD.findall(lowered):
        vector[zlib.crc32(word.encode()) % TEXT_DIMENSION] += 1.0
    vector += _trigram_counts(" " + " ".join(_WORD.findall(lowered)) + " ")
    norm = float(np.linalg.norm(vector))
    if norm > 0.0:
        vector /= norm
    vector.flags.writeable = False
    return vector


def _trigram_counts(text: str) -> np.ndarray:
    """Count character trigrams into TEXT_DIMENSION buckets with a multiplicative hash on their bytes."""
    data = np.frombuffer(text.encode(), dtype=np.uint8).astype(np.uint64)
    if data.size < 3:
        return np.zeros(TEXT_DIMENSION)
    packed = (data[:-2] << np.uint64(16)) | (data[1:-1] << np.uint64(8)) | data[2:]
    hashed = (packed * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    buckets = (hashed >> np.uint64(8)) % np.uint64(TEXT_DIMENSION)
    return np.bincount(buckets.astype(np.int64), minlength=TEXT_DIMENSION).astype(float) * 0.5


@dataclass(frozen=True)
class AgentProfile:
    """The static part of an agent used for matching: its normalised tags and its text vector."""

    tags: np.ndarray
    text: np.ndarray


@lru_cache(maxsize=4096)
def agent_profile(capabilities: tuple[str, ...], persona_text: str = "") -> AgentProfile:
    """Build (and cache) the matching profile of an agent from its capability tags and persona."""
    tags = np.zeros(len(CAPABILITIES))
    for tag in normalize_tags(capabilities):
        tags[CAPABILITY_INDEX[tag]] = 1.0
    tags.flags.writeable = False
    text = text_vector(" ".join(capabilities).replace("-", " ").replace("_", " ") + " " + persona_text)
    return AgentProfile(tags=tags, text=text)


@lru_cache(maxsize=1024)
def requirement_vector(requirement_text: str, required_tags: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """Return the required-tag indicator vector and the tag count, inferring tags from the text if none."""
    tags = normalize_tags(required_tags) or tuple(infer_requirements(requirement_text))
    vector = np.zeros(len(CAPABILITIES))
    for tag in tags:
        vector[CAPABILITY_INDEX[tag]] = 1.0
    vector.flags.writeable = False
    return vector, len(tags)


def match_scores(
    requirement_text: str,
    required_tags: Sequence[str],
    tag_matrix: np.ndarray,
    text_matrix: np.ndarray,
) -> np.ndarray:
    """Score many agents at once; rows of the matrices are the agents' profile tags and text vectors.

    Returns TAG_WEIGHT * (share of required tags covered) + TEXT_WEIGHT * max(cosine, 0) per agent. When
    no tag is required or inferable, the text similarity alone decides.
    """
    required, required_count = requirement_vector(requirement_text, tuple(required_tags))
    # Both vectors are unit length, so the product is a cosine; clipping it keeps the score in [0, 1].
    similarity = np.minimum(np.maximum(text_matrix @ text_vector(requirement_text), 0.0), 1.0)
    if required_count == 0:
        return similarity
    overlap = tag_matrix @ required
    overlap *= TAG_WEIGHT / required_count
    overlap += TEXT_WEIGHT * similarity
    return overlap


def match_score(
    requirement_text: str,
    required_tags: Sequence[str],
    agent_capabilities: Sequence[str],
    persona_text: str = "",
) -> float:
    """Score in [0, 1] how well one agent fits a requirement (see `match_scores` for the formula)."""
    profile = agent_profile(tuple(agent_capabilities), persona_text)
    scores = match_scores(requirement_text, required_tags, profile.tags[None, :], profile.text[None, :])
    return float(scores[0])
