"""`python -m edge_agent.cli` is the same as `edge-agent`."""

from edge_agent.cli.main import cli

cli()
