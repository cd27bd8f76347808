"""The PHI guard at scale: one compiled matcher per cohort against one scan per value.

Setup (issue 17, part 7): 100,000 synthetic patients, each with an MRN, a name with a space
("Firstname Lastname-00042") and a free-text note of about 50 characters, all in columns
riskmodel does not use, so all are guarded. Checked: a ~222 KB text artifact of aggregates (the
size the audit measured: a model report), and the short texts that make up most of the 771
checks of one endpoint (params, tags, metric names).

* **riskmodel**: :class:`riskmodel.privacy.PhiGuard` as it is now: identifiers looked up as
  tokens in a set, spaced identifiers and free text found by one hashed substring set built once
  per cohort (:class:`riskmodel.privacy.SubstringSet`).
* **baseline** ``scan-per-value``: the guard before issue 17, copied below (``BaselineGuard``):
  for every check, ``v in text`` for every spaced identifier and ``snippet in text`` for every
  free-text value.

Both are built from the same identifiers and free text and must agree on every decision: the
clean artifact passes; the artifact with one note, one name or one MRN inserted is refused with
the same rule. Reported per side: build time, the artifact check, one short check, an endpoint
(770 short checks and the artifact), and peak Python memory (tracemalloc) of building the guard.

Run: ``python benchmarks/phi_guard.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pandas as pd

SHORT_CHECKS_PER_ENDPOINT = 770  # with the artifact: the audit's 771 checks of one endpoint
WORDS = [
    "pain",
    "swelling",
    "review",
    "stable",
    "fatigue",
    "nausea",
    "dyspnoea",
    "wound",
    "healing",
    "referral",
    "discussed",
    "family",
    "advised",
    "follow",
    "imaging",
    "scheduled",
    "declined",
    "smoker",
    "appetite",
    "improved",
    "worse",
    "mobility",
    "walker",
]


@dataclass(frozen=True)
class BaselineGuard:
    """The identifier and free-text rules of the PHI guard before issue 17 (a named baseline)."""

    identifiers: frozenset[str]
    free_text: tuple[str, ...]

    @classmethod
    def for_cohort(cls, cohort: Any) -> BaselineGuard:
        """As the guard built itself before issue 17 (its identifier and free-text sets)."""
        import re

        from riskmodel.privacy import _identifier_like, _row_numbers

        data = cohort.data
        ids = [str(v).strip() for v in data["patient_id"].dropna()]
        values = {v for v in [*ids, *cohort.sensitive] if v}
        if _row_numbers(ids, cohort.n_read or len(data)):
            values -= set(ids)
        identifiers = frozenset(v for v in values if _identifier_like(v))
        free_text = tuple(sorted(v for v in values if len(v) >= 8 and not re.fullmatch(r"[\w\-]+", v)))
        return cls(identifiers, free_text)

    def check_text(self, field: str, text: str) -> None:
        from riskmodel.privacy import _DATE, _TOKEN, PrivacyError, _without_pixels

        text = _without_pixels(text)
        if _DATE.search(text):
            raise PrivacyError(f"refused to write {field}: it contains a full date (only years may be shared)")
        if self.identifiers:
            hits = self.identifiers.intersection(_TOKEN.findall(text))
            spaced = [v for v in self.identifiers if " " in v and v in text]
            if hits or spaced:
                raise PrivacyError(
                    f"refused to write {field}: it contains a patient identifier or a value of an unused input column"
                )
        for snippet in self.free_text:
            if snippet in text:
                raise PrivacyError(f"refused to write {field}: it contains free text copied from the input")


def cohort(n: int, seed: int = 17) -> SimpleNamespace:
    """``n`` patients with an MRN, a spaced name and a free-text note (the guard's inputs only)."""
    rng = random.Random(seed)
    ids = [f"MRN{10_000_000 + 7 * i}" for i in range(n)]
    names = [f"Firstname Lastname-{i:05d}" for i in range(n)]
    notes = [" ".join(rng.choice(WORDS) for _ in range(7)) + f"; seen {i}" for i in range(n)]
    data = pd.DataFrame({"patient_id": ids})
    return SimpleNamespace(data=data, sensitive=frozenset(names + notes), n_read=n, names=names, notes=notes)


def artifact(kb: int, seed: int = 3) -> str:
    """About ``kb`` KB of aggregate text: a report's tables of estimates, words and numbers."""
    rng = random.Random(seed)
    lines = ["<html><body><h1>Model report</h1><table>"]
    size = 0
    while size < kb * 1024:
        line = (
            f"<tr><td>{rng.choice(WORDS)} {rng.choice(WORDS)}</td><td>{rng.uniform(0, 5):.3f}</td>"
            f"<td>{rng.uniform(0, 1):.4f} ({rng.uniform(0, 1):.2f} to {rng.uniform(1, 2):.2f})</td></tr>"
        )
        lines.append(line)
        size += len(line) + 1
    return "\n".join([*lines, "</table></body></html>"])


def _decision(check: Callable[[str, str], None], text: str) -> str:
    from riskmodel.privacy import PrivacyError

    try:
        check("artifact", text)
    except PrivacyError as exc:
        return str(exc).split(": it contains ", 1)[-1]
    return "passed"


def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - start) / repeat, out


def _peak(fn: Callable[[], Any]) -> tuple[float, Any]:
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, out


def run(n: int = 100_000, kb: int = 222, artifact_repeats: int = 3) -> dict[str, Any]:
    """Both guards on the same cohort and texts; timings, memory and their decisions."""
    from riskmodel.privacy import PhiGuard

    people = cohort(n)
    build_s, new = _timed(lambda: PhiGuard.for_cohort(people))
    old_build_s, old = _timed(lambda: BaselineGuard.for_cohort(people))
    assert (old.identifiers, old.free_text) == (new.identifiers, new.free_text)
    new_mib, _ = _peak(lambda: PhiGuard.for_cohort(people))
    old_mib, _ = _peak(lambda: BaselineGuard.for_cohort(people))
    text = artifact(kb)
    short = "models.cox.penalty=0.1"
    cases = {
        "clean": text,
        "a note": text[: len(text) // 2] + people.notes[n // 2] + text[len(text) // 2 :],
        "a name": text[: len(text) // 3] + " " + people.names[n - 1] + " " + text[len(text) // 3 :],
        "an MRN": text + f" {people.data['patient_id'].iloc[0]}",
    }
    decisions = {name: (_decision(new.check_text, t), _decision(old.check_text, t)) for name, t in cases.items()}
    sides = {}
    for side, guard in (("riskmodel", new), ("baseline", old)):
        artifact_s, _ = _timed(lambda g=guard: g.check_text("artifact", text), artifact_repeats)
        short_s, _ = _timed(lambda g=guard: g.check_text("params", short), 20)
        sides[side] = {
            "artifact_check_seconds": artifact_s,
            "short_check_seconds": short_s,
            "endpoint_seconds": SHORT_CHECKS_PER_ENDPOINT * short_s + artifact_s,
        }
    sides["riskmodel"].update(build_seconds=build_s, build_peak_mib=new_mib)
    sides["baseline"].update(build_seconds=old_build_s, build_peak_mib=old_mib)
    return {
        "patients": n,
        "guarded_values": len(new.identifiers) + len(new.free_text),
        "artifact_kb": round(len(text.encode()) / 1024, 1),
        "riskmodel": sides["riskmodel"],
        "baseline": {"name": "scan-per-value (the guard before issue 17)", **sides["baseline"]},
        "ratio_artifact": sides["baseline"]["artifact_check_seconds"] / sides["riskmodel"]["artifact_check_seconds"],
        "ratio_short": sides["baseline"]["short_check_seconds"] / sides["riskmodel"]["short_check_seconds"],
        "ratio_endpoint": sides["baseline"]["endpoint_seconds"] / sides["riskmodel"]["endpoint_seconds"],
        "decisions": {k: {"riskmodel": a, "baseline": b} for k, (a, b) in decisions.items()},
        "same_decisions": all(a == b for a, b in decisions.values()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 patients and a 20 KB artifact (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    result = run(2_000, 20, 1) if args.quick else run()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r, b = result["riskmodel"], result["baseline"]
        print(
            f"{result['patients']:,} patients, {result['guarded_values']:,} guarded values, "
            f"artifact {result['artifact_kb']} KB; same decisions: {result['same_decisions']}"
        )
        print(f"{'':24}{'riskmodel':>14}{'baseline':>14}{'ratio':>10}")
        for key, label, ratio in (
            ("artifact_check_seconds", "artifact check (s)", "ratio_artifact"),
            ("short_check_seconds", "short check (s)", "ratio_short"),
            ("endpoint_seconds", "one endpoint (s)", "ratio_endpoint"),
        ):
            print(f"{label:24}{r[key]:>14.5f}{b[key]:>14.5f}{result[ratio]:>9.0f}×")
        print(f"{'build (s)':24}{r['build_seconds']:>14.2f}{b['build_seconds']:>14.2f}")
        print(f"{'build peak (MiB)':24}{r['build_peak_mib']:>14.1f}{b['build_peak_mib']:>14.1f}")
    return result


if __name__ == "__main__":
    main()
