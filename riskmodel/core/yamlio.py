"""Reading user YAML files (mappings, experiments) with one-line, located errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from riskmodel.errors import UserInputError

__all__ = ["read_yaml_mapping", "validation_lines"]


def read_yaml_mapping(path: Path, what: str, keys_hint: str, error: type[UserInputError]) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or ``error`` naming the file and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a readable YAML file ({type(exc).__name__}: {exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        article = "an" if what[0] in "aeiou" else "a"
        raise error(f"{path}: {article} {what} file must be a YAML mapping with keys such as {keys_hint}")
    return raw


def validation_lines(path: Path, exc: ValidationError) -> list[str]:
    """One line per pydantic error: file, key path, value and rule."""
    out = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"])
        value = "" if e["type"] == "missing" or not where else f", value {e.get('input')!r}"
        out.append(f"{path}: {where or '(top level)'}{value}: {e['msg']}")
    return out
