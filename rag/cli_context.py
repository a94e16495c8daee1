"""What the `rag` commands share: the invocation's `--config` and the settings loaded from it.

The root callback (rag/cli.py) puts one `Invocation` in click's context object; every command module (rag/cli.py,
rag/cli_config.py, rag/cli_eval.py, rag/cli_service.py) reaches it through `invocation(ctx)`, so they import nothing
from each other and no state outlives the command. Loading the settings here is also where the egress guard learns
the hosts this command may reach: the entry point configures it explicitly (rag/sovereign.py), `load_settings` does
not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from .settings import Settings


@dataclass
class Invocation:
    """One run of `rag`: the `--config` given before the command (None: `RAG_CONFIG`, else rag/default.yaml alone)."""

    config: Path | None = None
    _loaded: dict[Path | None, Settings] = field(default_factory=dict, repr=False)

    def settings(self, config: Path | None = None) -> Settings:
        """The settings of `config` (a command's own `--config`), else of the invocation's, loaded once; the egress
        guard is installed if it is not yet and allowed the hosts they list (llm.endpoints,
        sovereignty.allowed_hosts). Raises ConfigError for a missing or invalid configuration."""
        chosen = config or self.config
        if chosen not in self._loaded:
            from .settings import load_settings
            from .sovereign import enforce_offline

            settings = load_settings(chosen)
            enforce_offline(settings)
            self._loaded[chosen] = settings
        return self._loaded[chosen]


def invocation(ctx: typer.Context) -> Invocation:
    """The `Invocation` of the running command (set by the root callback; a fresh one when a command module is run
    on its own, as in tests that call its Typer app)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Invocation):
        root.obj = Invocation()
    return root.obj
