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


def key_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A pydantic location as the YAML key path a person reads: ``cohort.covariates[2].reference``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_lines(path: Path, exc: ValidationError) -> list[str]:
    """One line per pydantic error: file, key path, value and rule.

    A rule that names its own key path (the cross-field checks do) is shown as it is; a value
    that is a long mapping or list is named by its key path only, not dumped.
    """
    out = []
    for e in exc.errors():
        where = key_path(e["loc"])
        message = str(e["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = e.get("input")
        long = isinstance(value, dict | list) and len(repr(value)) > 60
        shown = "" if e["type"] == "missing" or not where or long else f", value {value!r}"
        name = value.get("name") if isinstance(value, dict) else None
        label = f" ({name})" if isinstance(name, str) else ""
        out.append(f"{path}: {where}{label}{shown}: {message}" if where else f"{path}: {message}")
    return out
