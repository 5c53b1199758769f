"""`strangler export`: the YAML file with the store's runtime overrides written into it, so the
state a rollout reached can be reviewed and committed like any config change.

Rules: the file's comments, order and layout stay (ruamel.yaml round trip); only the `stage`
of overridden routes and the `canary.weight` of overridden canaries change. The result is
validated before it is printed or written, and `--output` replaces the file atomically.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from strangler.config import Config, parse_config
from strangler.control.effective import unit_of
from strangler.control.state import Override
from strangler.errors import ConfigError


class ExportError(Exception):
    pass


def export_yaml(text: str, base: Config, overrides: dict[str, Override], source: str) -> str:
    """`text` (the config file `base` was loaded from) with `overrides` written in."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    document = yaml.load(text)
    # ruamel writes lists with its own indentation; keep the file's (ruamel does not detect it).
    dash = _dash_column(text)
    yaml.indent(mapping=2, sequence=dash + 2, offset=dash)
    routes = document.get("routes") if isinstance(document, CommentedMap) else None
    if not isinstance(routes, CommentedSeq) or len(routes) != len(base.routes):
        raise ExportError("cannot find the config's routes list to write the overrides into")
    for node, route in zip(routes, base.routes, strict=True):
        override = overrides.get(unit_of(route))
        if override is None or not isinstance(node, CommentedMap):
            continue
        if override.stage is not None:
            node["stage"] = override.stage
        if override.weight_bp is not None and override.stage == "canary":
            canary = node.get("canary")
            if not isinstance(canary, CommentedMap):
                canary = CommentedMap()
                node["canary"] = canary
            canary["weight"] = override.weight_bp / 100
    out = io.StringIO()
    yaml.dump(document, out)
    result = out.getvalue()
    try:
        parse_config(result, source)
    except ConfigError as exc:
        raise ExportError(f"the exported config would not load: {exc}") from exc
    return result


def _dash_column(text: str) -> int:
    """The column of the first block-list dash after `routes:` (0 when there is none)."""
    lines = text.splitlines()
    for at, line in enumerate(lines):
        if line.startswith("routes:"):
            for following in lines[at + 1 :]:
                stripped = following.lstrip()
                if stripped.startswith("- ") or stripped == "-":
                    return len(following) - len(stripped)
            break
    return 0


def write_atomically(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
