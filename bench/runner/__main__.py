"""`python -m bench.runner run|data ...`: the two commands without the `edge-agent bench` group."""

from __future__ import annotations

import click

from bench.runner.cli import data_command, run_command


@click.group()
def main() -> None:
    """Benchmark runner and data fetcher."""


main.add_command(run_command)
main.add_command(data_command)

if __name__ == "__main__":
    main()
