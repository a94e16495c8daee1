"""`rag config show`: the effective configuration, and where each value came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_context import invocation

config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output: the values only")] = False,
) -> None:
    """Print the effective configuration as YAML, each value followed by where it came from (`default`, a YAML
    file's path, or `env RAG_...`); the output is itself a valid configuration file."""
    from .settings import home_dir, packaged_config_file, value_origins

    settings = invocation(ctx).settings()
    values = settings.model_dump(mode="json")
    if json_out:
        typer.echo(json.dumps(values, ensure_ascii=False, indent=2))
        return
    files = [str(packaged_config_file())] + ([str(settings.config_file)] if settings.config_file else [])
    home = home_dir()
    kind = "the source checkout" if home == Path(__file__).resolve().parents[1] else "the per-user data folder"
    header = [
        "# Effective configuration. After each value: where it came from.",
        f"# Layers, lowest first: default (rag/settings.py) < {' < '.join(files)} < environment (RAG_...).",
        f"# index_dir and data_dir default to index/ and data/ in {home} ({kind}).",
    ]
    typer.echo("\n".join(header + annotated_yaml(values, value_origins(settings.config_file))))


def annotated_yaml(values: dict[str, Any], origins: dict[str, str], prefix: str = "", indent: str = "") -> list[str]:
    """YAML lines of `values` (nested sections), each setting followed by `# <its origin>`.

    Values are written as JSON, which YAML reads back unchanged (`yaml.safe_load` of the lines gives `values`); a
    mapping-valued setting (`embedder.file_sha256`) gets one line per entry under its name."""
    lines = []
    for key, value in values.items():
        dotted = prefix + key
        if dotted not in origins:  # a section
            lines.append(f"{indent}{key}:")
            lines += annotated_yaml(value, origins, f"{dotted}.", indent + "  ")
        elif isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:  # {origins[dotted]}")
            lines += [
                f"{indent}  {json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
                for k, v in value.items()
            ]
        else:
            lines.append(f"{indent}{key}: {json.dumps(value, ensure_ascii=False)}  # {origins[dotted]}")
    return lines
