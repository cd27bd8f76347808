"""Every public function and class (each module's ``__all__``) has a docstring: the API reference
(docs/reference/api.md, mkdocstrings) is built from them, so an undocumented one fails here, in CI."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import riskmodel


def test_every_public_function_and_class_has_a_docstring() -> None:
    undocumented = []
    for info in pkgutil.walk_packages(riskmodel.__path__, "riskmodel."):
        if info.name.endswith("__main__"):  # running it would run the CLI
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (obj.__doc__ or "").strip():
                undocumented.append(f"{info.name}.{name}")
    assert not sorted(set(undocumented)), "public, without a docstring: " + ", ".join(sorted(set(undocumented)))
