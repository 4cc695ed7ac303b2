"""Raw llama-cpp-python generation speed on a fixed prompt: the ceiling an agent-level benchmark compares to.

Run ``python -m bench.backend_throughput [--model PATH] [--max-tokens 64] [--repeats 3]``; it prints
tokens per second. End-of-sequence is banned so every repeat generates exactly ``max_tokens`` tokens.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

FIXED_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle.\n\nStory:"
FIXED_SEED = 1234


def raw_tokens_per_second(
    model_path: str | Path,
    prompt: str = FIXED_PROMPT,
    max_tokens: int = 64,
    repeats: int = 3,
    n_threads: int | None = None,
) -> float:
    """Return generated tokens per second of llama.cpp alone, averaged over ``repeats`` greedy runs.

    One untimed warm-up run comes first. Prompt processing is included in the time, as it is for a
    backend call; the prompt is short, so generation dominates.
    """
    from llama_cpp import Llama

    threads = n_threads if n_threads is not None else max(1, (os.cpu_count() or 1) - 1)
    llm = Llama(model_path=str(model_path), n_ctx=512, n_threads=threads, seed=FIXED_SEED, verbose=False)
    banned = {llm.token_eos(): -1e9}  # keeps every run at exactly max_tokens
    try:
        llm.create_completion(prompt, max_tokens=8, temperature=0.0, seed=FIXED_SEED, logit_bias=banned)
        tokens, elapsed = 0, 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            response = llm.create_completion(
                prompt, max_tokens=max_tokens, temperature=0.0, seed=FIXED_SEED, logit_bias=banned
            )
            elapsed += time.perf_counter() - started
            tokens += int(response["usage"]["completion_tokens"])  # type: ignore[index]
    finally:
        llm.close()
    return tokens / elapsed if elapsed > 0 else 0.0


def main() -> None:
    """Parse options, run the measurement and print tokens per second."""
    from model_store import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: bundled SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    arguments = parser.parse_args()
    model_path = arguments.model or default_model_path()
    rate = raw_tokens_per_second(model_path, FIXED_PROMPT, arguments.max_tokens, arguments.repeats, arguments.threads)
    print(f"{model_path.name}: {rate:.1f} tokens/s ({arguments.max_tokens} tokens x {arguments.repeats}, greedy)")


if __name__ == "__main__":
    main()
