"""Reference pages generated from riskmodel itself at build time, so they cannot drift:
every command's ``--help`` (from the Typer app), and every key of an experiment and of a cohort
declaration (from the pydantic models' JSON Schema and field descriptions)."""

from __future__ import annotations

from typing import Any

import typer

WIDTH = 100


def _help(command: Any, name: str, parent: Any) -> tuple[str, Any]:
    context = type(parent) if parent is not None else command.context_class
    ctx = context(command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
    return command.get_help(ctx), ctx


def _walk(command: Any, name: str, parent: Any, path: list[str]) -> list[str]:
    text, ctx = _help(command, name, parent)
    title = " ".join(path)
    out = [f"## `{title}`\n", "```text", text.replace("python -m riskmodel", "riskmodel"), "```\n"]
    if hasattr(command, "list_commands"):  # a group (Typer may bring its own click)
        for sub in command.list_commands(ctx):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                out += _walk(child, sub, ctx, [*path, sub])
    return out


def cli_reference() -> str:
    """Every command's help, in the order ``riskmodel --help`` lists them, as Markdown."""
    from riskmodel.cli import app

    group = typer.main.get_command(app)
    return "\n".join(_walk(group, "riskmodel", None, ["riskmodel"]))


# ----------------------------------------------------------------------------- JSON Schema tables


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"[{prop['$ref'].split('/')[-1]}](#{prop['$ref'].split('/')[-1].lower()})"
    if "enum" in prop:
        return ", ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type(prop["allOf"][0])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"mapping of {_type(prop['additionalProperties'])}"
    return str(kind)


def _limits(prop: dict[str, Any]) -> str:
    parts = []
    for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in prop:
            parts.append(f"{word} {prop[key]}")
    if "pattern" in prop:
        parts.append(f"pattern `{prop['pattern']}`")
    for p in prop.get("anyOf", []):
        sub = _limits(p)
        if sub:
            parts.append(sub)
    return ", ".join(parts)


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    if isinstance(value, dict) and value:
        return "see its table"
    return f"`{value!r}`"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _object_table(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = [f"### {name}\n"]
    if schema.get("description"):
        lines.append(_cell(schema["description"]) + "\n")
    lines += ["| key | type | default | limits | meaning |", "|---|---|---|---|---|"]
    for key, prop in schema.get("properties", {}).items():
        default = "required" if key in required else _default(prop)
        lines.append(
            f"| `{key}` | {_cell(_type(prop))} | {_cell(default)} | {_cell(_limits(prop))} "
            f"| {_cell(prop.get('description', ''))} |"
        )
    return [*lines, ""]


def schema_reference(model: type, title: str) -> str:
    """One Markdown table per object of a pydantic model's JSON Schema: its keys, types, defaults,
    limits and descriptions (the model first, then the objects it refers to, alphabetically)."""
    schema = model.model_json_schema()  # type: ignore[attr-defined]
    lines = _object_table(title, schema)
    for name, sub in sorted(schema.get("$defs", {}).items()):
        if sub.get("type") == "object" or "properties" in sub:
            lines += _object_table(name, sub)
        elif "enum" in sub:
            lines += [f"### {name}\n", "One of " + ", ".join(f"`{v}`" for v in sub["enum"]) + ".\n"]
    return "\n".join(lines)
