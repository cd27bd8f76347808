"""The base of every settings model: strict, frozen, and refusing unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown keys, never coerces types, and cannot be changed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
