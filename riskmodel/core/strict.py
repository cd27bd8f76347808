"""The base of every settings model: strict, frozen, and refusing unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """A pydantic model that forbids unknown keys, never coerces types, cannot be changed, and
    refuses NaN and infinities in every float field (YAML's ``.nan`` passes every comparison check:
    cut-offs of ``[.nan, .nan]`` once put every patient in the lowest group)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
