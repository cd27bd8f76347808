"""Verify a whole MLflow model folder before anything in it is imported or run.

``mlflow.pyfunc.load_model`` (and ``mlflow models serve``) reads ``MLmodel``, picks a loader from
it and runs the entry file it names; ``mlflow models serve`` first builds an environment from
``conda.yaml`` / ``python_env.yaml`` / ``requirements.txt``. riskmodel's SHA-256 manifest covers
only ``artifacts/<name>/``, and a manifest can be rewritten by whoever edits the folder, so the
files MLflow acts on are checked here against what riskmodel itself writes, never against a
record kept in the folder:

- ``MLmodel``: one flavor, ``python_function``, whose loader fields are exactly riskmodel's
  (the models-from-code loader, no ``code`` paths, no pickled ``python_model``, one artifact
  ``riskmodel`` inside ``artifacts/``, the two environment files);
- the entry file: byte-identical to the one this riskmodel ships (:data:`ENTRY_FILE`);
- the environment files: pinned ``name==version`` lines of the libraries riskmodel lists, no
  index URL, no option, no other channel; ``conda.yaml``'s pip list equal to ``requirements.txt``;
- no other file, no symbolic link;
- the riskmodel folder itself: its manifest, hashes, schemas and arrays, by loading it without
  pickle (:meth:`riskmodel.scoring.RiskModel.load`).

Nothing here imports the entry file or any code of the folder; YAML is read with the safe loader,
size-capped, and refused when it uses anchors or aliases (a "billion laughs" bomb).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from riskmodel.core.yamlio import safe_yaml
from riskmodel.errors import ModelFileError
from riskmodel.scoring import RiskModel

__all__ = ["ENTRY_FILE", "REQUIREMENT_NAMES", "Verified", "verify_mlflow_folder", "verify_model_folder"]

# the models-from-code file MLflow copies into every logged model and runs when it loads one
ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")
# the libraries a logged model's environment pins (whichever xgboost build is installed is listed)
REQUIREMENT_NAMES = (
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "scikit-survival",
    "xgboost",
    "xgboost-cpu",
    "skops",
    "pydantic",
    "PyYAML",
    "typer",
    "openpyxl",
    "pyarrow",
    "mlflow",
)

MLMODEL = "MLmodel"
ENV_FILES = ("conda.yaml", "python_env.yaml", "requirements.txt")
REGISTERED_META = "registered_model_meta"  # MLflow adds it when it downloads a models:/ URI
ENTRY_NAMES = frozenset({ENTRY_FILE.name, "_pyfunc_entry.py"})  # riskmodel < 0.9 named it _pyfunc_entry.py
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
MAX_TEXT_BYTES = 1 << 20  # MLmodel and the environment files are a few kB
# the python_function fields riskmodel's models carry (MLflow writes them for models from code)
FLAVOR_KEYS = frozenset(
    {"artifacts", "cloudpickle_version", "code", "env", "loader_module", "model_code_path", "python_version"}
    | {"streamable"}
)
# MLmodel's top-level fields: metadata MLflow writes; none of them picks code to run
TOP_KEYS = frozenset(
    {
        "artifact_path",
        "databricks_runtime",
        "env_vars",
        "flavors",
        "is_signature_from_type_hint",
        "metadata",
        "mlflow_version",
        "model_id",
        "model_size_bytes",
        "model_uuid",
        "prompts",
        "run_id",
        "signature",
        "type_hint_from_example",
        "utc_time_created",
    }
)
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)")
_ARTIFACT_PATH = re.compile(r"artifacts/[A-Za-z0-9_][A-Za-z0-9_.-]*")
_VERSION = re.compile(r"\d+(\.\d+){0,2}")
_CONDA_PIN = re.compile(r"(python|pip)(=|==|<=|>=)\d+(\.\d+){0,2}")
_BUILD_PIN = re.compile(r"(pip|setuptools|wheel)(==\d+(\.\d+){0,2})?")


@dataclass
class Verified:
    """A folder that passed: the riskmodel folder inside it, the model, and what was checked."""

    folder: Path
    model_dir: Path
    model: RiskModel
    checked: list[str] = field(default_factory=list)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_text(path: Path, problems: list[str]) -> str | None:
    if path.is_symlink() or not path.is_file():
        problems.append(f"{path}: missing or not a regular file")
        return None
    if path.stat().st_size > MAX_TEXT_BYTES:
        problems.append(f"{path}: {path.stat().st_size} bytes, over the {MAX_TEXT_BYTES} riskmodel ever writes")
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(f"{path}: not UTF-8 text")
        return None


def _read_yaml(path: Path, problems: list[str]) -> Any:
    """A small YAML file read by riskmodel's guarded reader (depth, duplicate keys); anchors and
    aliases, which MLflow never writes, are refused outright."""
    text = _read_text(path, problems)
    if text is None:
        return None
    try:
        if any(
            isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None)
            for e in yaml.parse(text, Loader=yaml.SafeLoader)
        ):
            problems.append(f"{path}: YAML anchors or aliases, which MLflow never writes; refusing to read it")
            return None
        return safe_yaml(text)
    except yaml.YAMLError as exc:
        problems.append(f"{path}: not readable YAML ({getattr(exc, 'message', None) or type(exc).__name__})")
        return None


def _check_flavor(folder: Path, pf: Any, problems: list[str]) -> tuple[str | None, str | None]:
    """The python_function flavor's loader fields; returns (entry file name, artifact path)."""
    where = f"{folder / MLMODEL}: flavors.python_function"
    if not isinstance(pf, dict):
        problems.append(f"{where}: must be a mapping")
        return None, None
    extra = sorted(str(k) for k in set(pf) - FLAVOR_KEYS)
    if extra:
        problems.append(f"{where}: fields riskmodel never writes: {', '.join(extra)} (a pickle or code loader)")
    if pf.get("loader_module") != CODE_LOADER:
        problems.append(f"{where}.loader_module: {pf.get('loader_module')!r}, must be {CODE_LOADER!r}")
    if pf.get("code") is not None:
        problems.append(f"{where}.code: {pf.get('code')!r}, must be null (no code paths on sys.path)")
    if pf.get("env") != {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}:
        problems.append(f"{where}.env: must name conda.yaml and python_env.yaml")
    code_path = pf.get("model_code_path")
    entry = str(code_path).replace("\\", "/").rsplit("/", 1)[-1] if isinstance(code_path, str) else None
    if entry not in ENTRY_NAMES:
        problems.append(f"{where}.model_code_path: {code_path!r}, must name riskmodel's {ENTRY_FILE.name}")
        entry = None
    artifacts = pf.get("artifacts")
    info = artifacts.get("riskmodel") if isinstance(artifacts, dict) and set(artifacts) == {"riskmodel"} else None
    path = info.get("path") if isinstance(info, dict) and set(info) <= {"path", "uri"} else None
    if not isinstance(path, str) or not _ARTIFACT_PATH.fullmatch(path) or ".." in path:
        problems.append(f"{where}.artifacts: must be one artifact, riskmodel, at artifacts/<name>")
        path = None
    return entry, path


def _check_mlmodel(folder: Path, problems: list[str]) -> tuple[str | None, str | None]:
    raw = _read_yaml(folder / MLMODEL, problems)
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        problems.append(f"{folder / MLMODEL}: must be a YAML mapping")
        return None, None
    extra = sorted(str(k) for k in set(raw) - TOP_KEYS)
    if extra:
        problems.append(f"{folder / MLMODEL}: fields riskmodel's models never carry: {', '.join(extra)}")
    flavors = raw.get("flavors")
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        shown = sorted(map(str, flavors)) if isinstance(flavors, dict) else flavors
        problems.append(f"{folder / MLMODEL}: flavors {shown!r}, must be exactly python_function")
        return None, None
    return _check_flavor(folder, flavors["python_function"], problems)


def _pins(path: Path, lines: Any, problems: list[str]) -> list[str] | None:
    """Pinned ``name==version`` lines of libraries riskmodel lists; anything else is refused."""
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        problems.append(f"{path}: must be a list of name==version lines")
        return None
    allowed = {_norm(n) for n in REQUIREMENT_NAMES}
    for line in lines:
        match = _PIN.fullmatch(line.strip())
        if match is None or _norm(match.group(1)) not in allowed:
            problems.append(f"{path}: {line.strip()[:60]!r} is not a pinned library riskmodel lists")
    return [x.strip() for x in lines]


def _check_env(folder: Path, problems: list[str]) -> None:
    text = _read_text(folder / "requirements.txt", problems)
    pins = (
        None
        if text is None
        else _pins(folder / "requirements.txt", [x for x in text.splitlines() if x.strip()], problems)
    )
    env = _read_yaml(folder / "python_env.yaml", problems)
    if env is not None:
        ok = (
            isinstance(env, dict)
            and set(env) == {"python", "build_dependencies", "dependencies"}
            and _VERSION.fullmatch(str(env["python"])) is not None
            and isinstance(env["build_dependencies"], list)
            and all(_BUILD_PIN.fullmatch(str(x)) for x in env["build_dependencies"])
            and env["dependencies"] == ["-r requirements.txt"]
        )
        if not ok:
            problems.append(
                f"{folder / 'python_env.yaml'}: not the environment riskmodel writes (python, pip, -r requirements.txt)"
            )
    conda = _read_yaml(folder / "conda.yaml", problems)
    if conda is None:
        return
    deps = conda.get("dependencies") if isinstance(conda, dict) else None
    ok = (
        isinstance(conda, dict)
        and set(conda) <= {"name", "channels", "dependencies"}
        and isinstance(conda.get("name", ""), str)
        and conda.get("channels", []) in (["conda-forge"], ["defaults"], [])
        and isinstance(deps, list)
        and all((isinstance(d, dict) and set(d) == {"pip"}) or _CONDA_PIN.fullmatch(str(d)) for d in deps)
    )
    if not ok or not isinstance(deps, list):
        problems.append(f"{folder / 'conda.yaml'}: not the environment riskmodel writes (conda-forge, python, pip)")
        return
    pip = [d["pip"] for d in deps if isinstance(d, dict)]
    listed = _pins(folder / "conda.yaml", pip[0] if len(pip) == 1 else None, problems)
    if listed is not None and pins is not None and listed != pins:
        problems.append(f"{folder / 'conda.yaml'}: its pip list differs from requirements.txt")


def _check_members(folder: Path, entry: str | None, artifact: str | None, problems: list[str]) -> None:
    """No symbolic link, and no file riskmodel never writes (a python_model.pkl, a code/ folder)."""
    known = {MLMODEL, *ENV_FILES, REGISTERED_META} | ({entry} if entry else set())
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            problems.append(f"{folder}: {name} is a symbolic link; refusing to load")
        elif path.is_file() and name not in known and not (artifact and name.startswith(artifact + "/")):
            problems.append(f"{folder}: {name} is a file riskmodel never writes; refusing to load")
    if entry is not None:
        path = folder / entry
        shipped = ENTRY_FILE.read_bytes()
        if (
            path.is_symlink()
            or not path.is_file()
            or path.stat().st_size != len(shipped)
            or path.read_bytes() != shipped
        ):
            problems.append(f"{path}: not byte-identical to the entry file riskmodel ships; refusing to load")
    meta = folder / REGISTERED_META
    if meta.exists():
        raw = _read_yaml(meta, problems)
        if raw is not None and not (
            isinstance(raw, dict)
            and set(raw) <= {"model_name", "model_version"}
            and all(v is None or isinstance(v, str | int) for v in raw.values())
        ):
            problems.append(f"{meta}: not MLflow's registered-model note (model_name, model_version)")


def verify_mlflow_folder(folder: str | Path) -> list[str]:
    """Check an MLflow model folder's own files (not the riskmodel folder inside it).

    Returns the path of the riskmodel folder inside (relative) as the last line of what was
    checked; raises :class:`ModelFileError`, one line per problem, if anything differs from what
    riskmodel writes. No file of the folder is imported or executed.
    """
    folder = Path(folder)
    problems: list[str] = []
    entry, artifact = _check_mlmodel(folder, problems)
    _check_env(folder, problems)
    _check_members(folder, entry, artifact, problems)
    if artifact is not None and not (folder / artifact).is_dir():
        problems.append(f"{folder}: {artifact} (the riskmodel artifact) is missing")
    if problems or artifact is None or entry is None:
        raise ModelFileError("\n".join(dict.fromkeys(problems)))
    return [
        f"{MLMODEL}: one flavor, python_function, loader {CODE_LOADER}, no code paths, no pickle",
        f"{entry}: byte-identical to riskmodel's entry file",
        "conda.yaml, python_env.yaml, requirements.txt: pinned libraries riskmodel lists, nothing else",
        "no other file, no symbolic link",
        artifact,
    ]


def verify_model_folder(folder: str | Path) -> Verified:
    """Verify a local model folder (an MLflow model folder or a plain riskmodel folder) and load it.

    The MLflow files are checked before the riskmodel folder is read, and that is read without
    pickle and without importing anything from the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: not a model folder")
    checked: list[str] = []
    model_dir = folder
    if (folder / MLMODEL).exists() or (folder / "artifacts").is_dir():
        checked = verify_mlflow_folder(folder)
        model_dir = folder / checked.pop()
    model = RiskModel.load(model_dir)
    checked.append(
        f"{model_dir.name}/: manifest, SHA-256 of every file, model.json and the {model.family} files' "
        "schemas and values, loaded without pickle"
    )
    return Verified(folder, model_dir, model, checked)
