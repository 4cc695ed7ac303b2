"""The benchmark runner over the real fabric (broker + agents + router), see `bench.runner.runner`.

config.py     RunConfig: benchmarks, phases, variants, fabric, outputs
prompts.py    the question each benchmark sends to the fabric
scoring.py    per-benchmark correctness (HumanEval via execution.py, in a subprocess)
progress.py   the resume log (finished item ids per phase and variant)
fabric.py     the embedded fabric (broker, three agents, router) or an existing one; the frozen router
runner.py     phases: cold-start, pretrain (learning), test (frozen selector)
outputs.py    per-phase JSONL, accuracy_summary.csv, the LinUCB trace
plots.py      matplotlib (Agg) figures
report.py     bench/RESULTS.md
cli.py        `bench run` and `bench data`
"""
