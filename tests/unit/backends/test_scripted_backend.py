"""The scripted backend: real benchmark items answered with a known skill, deterministically per seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.runner.prompts import prompt_for
from bench.scripted import ScriptedBackend, decoys
from edge_agent.backends.base import BackendUnavailable, GenerationOptions
from edge_agent.backends.registry import create_backend, default_cost_per_1k_tokens
from router.answers import extract_answer

GSM8K = str(Path(__file__).parents[2] / "integration" / "bench_runner" / "fixtures" / "gsm8k_5.jsonl")


def scripted(**settings: object) -> ScriptedBackend:
    return ScriptedBackend(benchmarks=["gsm8k"], item_files={"gsm8k": GSM8K}, **settings)  # type: ignore[arg-type]


def final_answer(backend: ScriptedBackend, prompt: str) -> str:
    generation = backend.generate([{"role": "user", "content": prompt}], GenerationOptions(max_tokens=32))
    return extract_answer(generation.text).raw


def test_a_perfect_agent_recognises_each_item_from_its_prompt_and_answers_gold() -> None:
    backend = scripted(skill={"gsm8k": 1.0})
    for item in backend.items:
        prompt = "Earlier steps: none.\n" + prompt_for(item)
        assert backend.recognise(prompt) == item
        assert final_answer(backend, prompt) == item.gold


def test_a_hopeless_agent_answers_a_plausible_wrong_number() -> None:
    backend = scripted(skill={"*": 0.0})
    for item in backend.items:
        answer = final_answer(backend, prompt_for(item))
        assert answer != item.gold and float(answer) == pytest.approx(float(answer))  # a number, not gold


def test_answers_replay_per_seed_and_differ_across_seeds() -> None:
    def answers(seed: int) -> list[str]:
        backend = scripted(skill={"gsm8k": 0.5}, seed=seed)
        return [final_answer(backend, prompt_for(item)) for item in backend.items * 8]

    assert answers(7) == answers(7)
    assert answers(7) != answers(8)


def test_the_share_of_right_answers_follows_the_skill_per_difficulty() -> None:
    backend = scripted(skill={"gsm8k": {"easy": 1.0, "hard": 0.0, "*": 0.6}})
    right: dict[str, list[bool]] = {}
    for item in backend.items * 60:
        _, ok = backend.answer(item)
        right.setdefault(item.difficulty or "", []).append(ok)
    assert all(right["easy"]) and not any(right["hard"])
    uniform = scripted(skill={"gsm8k": 0.6})
    share = sum(uniform.answer(item)[1] for item in uniform.items * 60) / (len(uniform.items) * 60)
    assert 0.5 <= share <= 0.7


def test_wrong_answers_of_different_agents_sometimes_agree() -> None:
    first, second = scripted(skill={"*": 0.0}, seed=1), scripted(skill={"*": 0.0}, seed=2)
    pairs = [(first.answer(item)[0], second.answer(item)[0]) for item in first.items * 10]
    agreeing = sum(a == b for a, b in pairs)
    assert 0 < agreeing < len(pairs)


def test_an_unknown_prompt_gets_an_honest_unknown() -> None:
    assert final_answer(scripted(), "What is the capital of Mars?") == "unknown"


def test_it_degrades_after_the_configured_number_of_items() -> None:
    backend = scripted(skill={"*": 1.0}, degrade_after=5, degraded_factor=0.0)
    results = [backend.answer(item)[1] for item in backend.items * 2]
    assert results == [True] * 5 + [False] * 5


def test_decoys_fit_the_answer_form() -> None:
    assert decoys("medqa", "C", "", {"options": {"A": "x", "B": "y", "C": "z"}}) == ["A", "B"]
    assert decoys("bbh", "(B)", "Options: (A) up (B) down (C) left", {}) == ["(A)", "(C)"]
    assert decoys("bbh", "True", "", {}) == ["False"]
    assert "19" in decoys("gsm8k", "18", "", {})


def test_registry_creates_it_and_bad_settings_are_refused(tmp_path: Path) -> None:
    backend = create_backend("scripted", benchmarks=["gsm8k"], item_files={"gsm8k": GSM8K}, latency_ms=1.0)
    assert backend.name == "scripted" and default_cost_per_1k_tokens("scripted") > 0
    with pytest.raises(ValueError, match="probability"):
        scripted(skill={"gsm8k": 1.5})
    with pytest.raises(ValueError, match="difficulty"):
        scripted(skill={"gsm8k": {"tricky": 0.5}})
    with pytest.raises(BackendUnavailable, match="bench data"):
        ScriptedBackend(benchmarks=["medqa"], cache_dir=str(tmp_path))


def test_it_degrades_once_its_degrade_file_exists(tmp_path: Path) -> None:
    trigger = tmp_path / "degrade"
    backend = scripted(skill={"*": 1.0}, degrade_file=str(trigger), degraded_factor=0.0)
    assert all(backend.answer(item)[1] for item in backend.items)
    trigger.touch()
    assert not any(backend.answer(item)[1] for item in backend.items)
