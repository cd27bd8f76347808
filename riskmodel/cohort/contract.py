"""The cohort contract: the canonical columns, their units, types, ranges and rules.

A value outside a *hard* range is impossible and stops the load. A value outside a *plausible*
range is possible but unusual for this population (the study's entry criteria, see
``shared/study/study.md``) and is reported as a warning. :func:`contract_markdown` renders this
table into ``data/README.md``, so the documentation cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COLUMNS",
    "COMPETING_ENDPOINTS",
    "ENDPOINTS",
    "ENDPOINT_DEFINITIONS",
    "ENDPOINT_LABELS",
    "OUTCOME_COLUMNS",
    "RESPONSE_CATEGORIES",
    "Column",
    "Endpoint",
    "column",
    "contract_markdown",
]

Kind = Literal["id", "float", "int", "category", "bool", "event"]
Role = Literal["id", "patient", "tumour", "treatment", "response", "outcome"]

RESPONSE_CATEGORIES = ("CR", "PR", "SD", "PD")
T_STAGES = ("T0", "Tis", "T1", "T1a", "T1b", "T2", "T3", "T4", "T4a", "T4b")
N_STAGES = ("N0", "N1", "N2", "N3")
M_STAGES = ("M0", "M1")


@dataclass(frozen=True)
class Column:
    """One canonical column of a cohort table."""

    name: str
    kind: Kind
    unit: str
    role: Role
    required: bool
    description: str
    hard_min: float | None = None
    hard_max: float | None = None
    min_exclusive: bool = False
    plausible: tuple[float, float] | None = None
    allowed: tuple[str, ...] | None = None
    step: float | None = None  # values off this grid are warned about (KPS in tens)

    def hard_range_text(self) -> str:
        """The hard range as it is printed in rules and in the data dictionary."""
        if self.hard_min is None and self.hard_max is None:
            return ""
        lo = "" if self.hard_min is None else f"{'>' if self.min_exclusive else '≥'} {self.hard_min:g}"
        hi = "" if self.hard_max is None else f"≤ {self.hard_max:g}"
        return ", ".join(x for x in (lo, hi) if x)


def _c(name: str, kind: Kind, unit: str, role: Role, required: bool, description: str, **kw: object) -> Column:
    return Column(name, kind, unit, role, required, description, **kw)  # type: ignore[arg-type]


COLUMNS: tuple[Column, ...] = (
    _c("patient_id", "id", "", "id", True, "Pseudonymous study ID. Unique. Never a name, MRN or date."),
    _c("age_years", "float", "years", "patient", True, "Age at implant.", hard_min=0, hard_max=120, plausible=(18, 95)),
    _c("sex", "category", "", "patient", True, "Sex.", allowed=("M", "F")),
    _c(
        "kps",
        "int",
        "points",
        "patient",
        True,
        "Karnofsky performance status at implant (study entry: ≥ 60).",
        hard_min=0,
        hard_max=100,
        plausible=(60, 100),
        step=10,
    ),
    _c(
        "pathological_grade",
        "category",
        "",
        "tumour",
        True,
        "Degree of differentiation as the study reports it (low = poorly differentiated). "
        "G1-G3 codes are not mapped automatically: G1 means *well* differentiated.",
        allowed=("low", "moderate", "high"),
    ),
    _c("t_stage", "category", "", "tumour", True, "AJCC 8th T category of the primary tumour.", allowed=T_STAGES),
    _c("n_stage", "category", "", "tumour", True, "AJCC 8th N category.", allowed=N_STAGES),
    _c("m_stage", "category", "", "tumour", True, "AJCC 8th M category.", allowed=M_STAGES),
    _c(
        "prior_ebrt_dose_gy",
        "float",
        "Gy",
        "treatment",
        False,
        "Cumulative dose of the earlier external beam radiotherapy.",
        hard_min=0,
        hard_max=150,
        min_exclusive=True,
        plausible=(20, 80),
    ),
    _c(
        "prior_ebrt_fractions",
        "int",
        "fractions",
        "treatment",
        False,
        "Number of fractions of the earlier EBRT (needed for EBRT BED/EQD2).",
        hard_min=1,
        hard_max=100,
        plausible=(5, 45),
    ),
    _c(
        "recurrence_interval_months",
        "float",
        "months",
        "tumour",
        True,
        "Time from the end of EBRT to the nodal recurrence (study entry: ≥ 2 months).",
        hard_min=0,
        hard_max=600,
        plausible=(2, 240),
    ),
    _c(
        "lesion_volume_cm3",
        "float",
        "cm³",
        "tumour",
        True,
        "Volume of the recurrent node before the implant.",
        hard_min=0,
        hard_max=2000,
        min_exclusive=True,
        plausible=(0.5, 180),
    ),
    _c(
        "seed_activity_mci",
        "float",
        "mCi",
        "treatment",
        False,
        "I-125 activity per seed.",
        hard_min=0,
        hard_max=10,
        min_exclusive=True,
        plausible=(0.2, 1.0),
    ),
    _c(
        "seed_count",
        "int",
        "seeds",
        "treatment",
        False,
        "Number of seeds implanted.",
        hard_min=1,
        hard_max=1000,
        plausible=(5, 150),
    ),
    _c(
        "prescription_dose_gy",
        "float",
        "Gy",
        "treatment",
        False,
        "Prescribed (planned) dose.",
        hard_min=0,
        hard_max=400,
        min_exclusive=True,
        plausible=(40, 180),
    ),
    _c(
        "d90_gy",
        "float",
        "Gy",
        "treatment",
        True,
        "Post-implant dose covering 90% of the CTV.",
        hard_min=0,
        hard_max=400,
        plausible=(30, 200),
    ),
    _c(
        "d100_gy",
        "float",
        "Gy",
        "treatment",
        False,
        "Post-implant dose covering 100% of the CTV (cannot exceed D90).",
        hard_min=0,
        hard_max=400,
        plausible=(5, 200),
    ),
    _c(
        "skin_d2cc_gy",
        "float",
        "Gy",
        "treatment",
        False,
        "Dose to the most exposed 2 cm³ of skin.",
        hard_min=0,
        hard_max=400,
        plausible=(0, 160),
    ),
    _c(
        "response_3mo",
        "category",
        "",
        "response",
        False,
        "Short-term response on CT 3 months after the implant. Measured after time zero: a model "
        "may use it only with a landmark of at least 3 months.",
        allowed=RESPONSE_CATEGORIES,
    ),
    _c("post_implant_chemo", "bool", "", "treatment", False, "Chemotherapy after the implant (yes/no)."),
    _c(
        "os_months",
        "float",
        "months",
        "outcome",
        True,
        "Overall survival time from the implant.",
        hard_min=0,
        hard_max=600,
        plausible=(0, 240),
    ),
    _c("os_event", "event", "", "outcome", True, "1 = died (any cause), 0 = alive at last follow-up."),
    _c(
        "lc_months",
        "float",
        "months",
        "outcome",
        True,
        "Local control time from the implant; death ends it. Must not exceed os_months.",
        hard_min=0,
        hard_max=600,
        plausible=(0, 240),
    ),
    _c(
        "lc_event",
        "event",
        "",
        "outcome",
        True,
        "1 = local progression of the treated node, 0 = censored (alive or died without it).",
    ),
)

_BY_NAME = {c.name: c for c in COLUMNS}
OUTCOME_COLUMNS = tuple(c.name for c in COLUMNS if c.role == "outcome")

# The study's endpoints: each is a time column ``<name>_months`` and an event column ``<name>_event``.
Endpoint = Literal["os", "lc"]
ENDPOINTS: tuple[Endpoint, ...] = ("lc", "os")
ENDPOINT_LABELS: dict[Endpoint, str] = {"lc": "Local control", "os": "Overall survival"}
# The study's competing events, declared as a user's export would declare them: LC's is death (the
# OS endpoint), and a death after the last local assessment is a death without local failure at
# the date of death (competing_after_censoring: competing; riskmodel.cohort.competing).
COMPETING_ENDPOINTS: dict[Endpoint, tuple[Endpoint, Literal["competing", "censored"]]] = {"lc": ("os", "competing")}
ENDPOINT_DEFINITIONS: dict[Endpoint, str] = {
    "lc": "Local control (LC): the event is local progression of the treated lesion; patients without it are "
    "censored at their last follow-up or death (death is not an LC event). In the competing-risks view, death "
    "without local progression is a competing event.",
    "os": "Overall survival (OS): the event is death from any cause; survivors are censored at their last follow-up.",
}


def column(name: str) -> Column:
    """Return the contract entry for a canonical column name.

    >>> column("d90_gy").hard_range_text()
    '≥ 0, ≤ 400'
    """
    return _BY_NAME[name]


def _allowed_text(c: Column) -> str:
    if c.allowed:
        return " / ".join(c.allowed)
    if c.kind == "bool":
        return "yes / no"
    if c.kind == "event":
        return "0 / 1"
    return ""


def contract_markdown() -> str:
    """Render the contract as the Markdown table used in ``data/README.md``."""
    head = (
        "| column | unit | type | allowed / hard range (error) | plausible (warning) | required | meaning |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for c in COLUMNS:
        allowed = _allowed_text(c) or c.hard_range_text()
        plaus = f"{c.plausible[0]:g} to {c.plausible[1]:g}" if c.plausible else ""
        if c.step:
            plaus += f"{'; ' if plaus else ''}multiple of {c.step:g}"
        rows.append(
            f"| `{c.name}` | {c.unit} | {c.kind} | {allowed} | {plaus} | "
            f"{'yes' if c.required else 'no'} | {c.description} |"
        )
    return head + "\n".join(rows) + "\n"
