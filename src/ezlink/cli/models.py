"""`ezlink embed`, `ezlink models`, `ezlink config check`: the served models, offline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ezlink.cli.common import ConfigOption, fail, settings_or_exit
from ezlink.errors import ConfigError, EzlinkError

if TYPE_CHECKING:
    from ezlink.engine.types import ServedModel

config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)


def embed(
    text: Annotated[str, typer.Argument(help="The text to embed.")],
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the first model).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Embed one text in-process and print a summary of the vector."""
    import numpy as np

    from ezlink.catalog import build_models, models_needed_by
    from ezlink.engine.registry import ModelRegistry
    from ezlink.engine.types import EMBEDDINGS, Embedder, EmbedRequest

    settings = settings_or_exit(config)
    try:
        registry = ModelRegistry(build_models(settings))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    embedders = registry.names(EMBEDDINGS)
    name = model or (embedders[0] if embedders else settings.models[0].id)
    if name not in embedders:
        raise fail(f"No model `{name}` in this config; it serves: {', '.join(embedders)}.")
    served = cast(Embedder, registry.get(name, EMBEDDINGS))

    async def run() -> None:
        started: list[ServedModel] = []
        try:
            for needed in models_needed_by(served):
                await needed.start()
                started.append(needed)
            result = await served.embed(EmbedRequest(texts=[text]))
        finally:
            await asyncio.gather(*(m.stop() for m in started))
        vector = result.vectors[0]
        head = ", ".join(f"{v:+.4f}" for v in vector[:6])
        typer.echo(f"model:      {name}")
        typer.echo(f"dimensions: {vector.shape[0]}")
        typer.echo(f"tokens:     {result.prompt_tokens}")
        typer.echo(f"norm:       {float(np.linalg.norm(vector)):.4f}")
        typer.echo(f"vector:     [{head}, ...]")

    try:
        asyncio.run(run())
    except (EzlinkError, ConfigError) as exc:
        raise fail(getattr(exc, "message", str(exc))) from None


def list_models(config: ConfigOption = None) -> None:
    """List the public model names a config serves."""
    settings = settings_or_exit(config)
    for model in settings.models:
        aliases = f"  (aliases: {', '.join(model.aliases)})" if model.aliases else ""
        typer.echo(f"{model.id}  [{model.kind}]{aliases}")


@config_app.command("check")
def check_config(
    file: Annotated[Path, typer.Argument(help="The config file to validate.")],
) -> None:
    """Validate a config file (and find its local models' files); exit 1 naming what is wrong."""
    from ezlink.backends.model_files import locate_model
    from ezlink.config import LocalModelConfig

    settings = settings_or_exit(file)
    for model in settings.models:
        if isinstance(model, LocalModelConfig):
            try:
                locate_model(model.path, model.package)
            except ConfigError as exc:
                raise fail(f"{file}: model `{model.id}`: {exc}") from None
    names = sum(len(m.public_names) for m in settings.models)
    count = len(settings.models)
    typer.echo(f"{file}: ok ({count} model{'' if count == 1 else 's'}, {names} public names)")
