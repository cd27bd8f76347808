"""Reading user YAML files (mappings, experiments) with one-line, located errors.

Configs come from users and sometimes from strangers, so the reader is guarded: a file above
:data:`MAX_YAML_BYTES` is refused before it is read, nesting deeper than :data:`MAX_YAML_DEPTH`
and aliases that would expand to more than :data:`MAX_YAML_NODES` values ("billion laughs") are
refused from the event stream (iteratively, before anything is built), and a key given twice in
one mapping is refused, not last-one-wins. Each refusal is one line naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from riskmodel.errors import UserInputError, one_line

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "read_yaml_mapping", "safe_yaml", "validation_lines"]

MAX_YAML_BYTES = 1 << 20  # an experiment or mapping is a few kB; a declaration of 1,000 covariates ~200 kB
MAX_YAML_DEPTH = 50  # the deepest riskmodel file nests about 6 levels
MAX_YAML_NODES = 100_000  # values after expanding aliases: room for any real config, none for a bomb


class _YamlRefused(yaml.YAMLError):
    """A guard refused the file; ``line`` is 1-based (0: no line)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class names it
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise _YamlRefused(f"the key {_short(key)} is given twice (lines {first} and {line}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_shape(text: str) -> None:
    """Refuse too deep nesting and alias bombs, walking the event stream without recursion.

    Every scalar and collection counts one value and an alias counts all the values of what it
    names, so the count is what loading would build if each alias were written out.
    """
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, count when opened)
    count = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_YAML_DEPTH:
                raise _YamlRefused(f"nested more than {MAX_YAML_DEPTH} levels deep", line)
            stack.append((event.anchor, count))
            count += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, opened = stack.pop()
            if anchor is not None:
                sizes[anchor] = count - opened
        elif isinstance(event, yaml.ScalarEvent):
            count += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            count += sizes.get(event.anchor or "", 1)
        if count > MAX_YAML_NODES:
            raise _YamlRefused(
                f"its aliases (*name) expand to more than {MAX_YAML_NODES:,} values; write the values out"
                if sizes
                else f"more than {MAX_YAML_NODES:,} values",
                line,
            )


def safe_yaml(text: str) -> Any:
    """Parse YAML text with riskmodel's guards (depth, alias expansion, duplicate keys).

    Raises ``yaml.YAMLError`` (a guard's refusal included) on anything it will not read.
    """
    _check_shape(text)
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: where, then what."""
    if isinstance(exc, _YamlRefused):
        where = f"line {exc.line}: " if exc.line else ""
        return f"{where}{exc.message}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p) or type(exc).__name__
        return f"{where}not a readable YAML file ({what})"
    return f"not a readable YAML file ({type(exc).__name__})"


def read_yaml_mapping(path: Path, what: str, keys_hint: str, error: type[UserInputError]) -> dict[str, Any]:
    """The top-level mapping of a YAML file, or ``error`` naming the file and what is wrong."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(f"{path}: a {what} file must be a regular file")
        if size > MAX_YAML_BYTES:
            raise error(f"{path}: {size:,} bytes is more than the {MAX_YAML_BYTES:,} a {what} file may have")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}: line {line}: not UTF-8 text (save the file as UTF-8)") from None
    try:
        raw = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise error(one_line(f"{path}: {_yaml_problem(exc)}")) from None
    except RecursionError:  # a guard missed a shape; never a traceback
        raise error(f"{path}: nested too deeply to read") from None
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
    that is a long mapping or list is named by its key path only, not dumped; a long scalar is
    cut with an ellipsis, and every line is bounded (see :func:`riskmodel.errors.one_line`).
    """
    out = []
    for e in exc.errors():
        where = key_path(e["loc"])
        message = str(e["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = e.get("input")
        long = isinstance(value, dict | list) and len(repr(value)) > 60
        shown = "" if e["type"] == "missing" or not where or long else f", value {_short(value)}"
        name = value.get("name") if isinstance(value, dict) else None
        label = f" ({_short(name, 40)})" if isinstance(name, str) else ""
        own_path = where and message.startswith((f"{where}.", f"{where}:", f"{where}["))
        out.append(
            one_line(f"{path}: {where}{label}{shown}: {message}" if where and not own_path else f"{path}: {message}")
        )
    return out
