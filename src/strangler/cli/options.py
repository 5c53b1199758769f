"""Options shared by several command groups, so each sub-app spells them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The gateway's YAML config file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
