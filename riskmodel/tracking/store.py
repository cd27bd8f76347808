"""The MLflow tracking store: runs, params, metrics, artifacts and models, through the PHI guard.

One parent run per ``train``, one child run per (endpoint, family); every param, tag, metric
name, text artifact and model file passes the PHI guard (:class:`riskmodel.privacy.PhiGuard`)
before MLflow sees it, and a refusal names the field.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from riskmodel.core.files import process_alive, retry_first_use, sqlite_setup_lock
from riskmodel.core.redact import redact_logs, redact_text, redact_url
from riskmodel.errors import UserInputError
from riskmodel.privacy import PhiGuard, PrivacyError
from riskmodel.scoring import RiskModel
from riskmodel.tracking.fresh_store import seed_new_store
from riskmodel.tracking.pyfunc import ENTRY_FILE, input_columns, requirements

__all__ = [
    "DEFAULT_TRACKING_URI",
    "EXPERIMENT_KIND",
    "TAG_PREFIX",
    "Tracker",
    "mlflow_module",
    "prepare_store",
    "resolve_tracking_uri",
]

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
TAG_PREFIX = "riskmodel."
# MLflow 3's UI opens an experiment by its kind: without this tag it may infer a GenAI experiment
# and open on traces and token usage; "custom_model_development" ("Machine learning") opens the runs.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def resolve_tracking_uri(override: str | None = None) -> str:
    """The tracking URI in force: the option, else the environment, else the project default."""
    return override or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def prepare_store(uri: str) -> str | None:
    """Create the folder of a local SQLite store; return the artifact root to use for new experiments."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        db.parent.mkdir(parents=True, exist_ok=True)
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def mlflow_module(uri: str) -> Any:
    """mlflow, imported here only (its own loggers quietened) and pointed at the tracking ``uri``."""
    import logging

    # MLflow 3 sends usage telemetry to its maintainers from background threads (a config fetch, then
    # events): nothing a clinical store should send off the machine unasked, and CPU time beside a
    # train; MLFLOW_DISABLE_TELEMETRY=false turns it back on
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    # a model is a few small files: MLflow's per-file progress bars would only bury the output
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # a store that is down: MLflow retries for about 100 s with a multi-line warning each time;
    # the one line riskmodel prints at the end says it all
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.ERROR)
    redact_logs(uri)  # a library that logs the store's URI, or an error quoting it, shows no password
    mlflow.set_tracking_uri(uri)
    return mlflow


class Tracker:
    """Logs one ``train`` invocation: a parent run and its child runs."""

    def __init__(self, experiment: str, tracking_uri: str | None = None, *, guard: PhiGuard | None = None) -> None:
        self.guard = guard or PhiGuard()  # without a cohort: the date and table rules still apply
        self.guard.check("experiment name", experiment)
        self.uri = resolve_tracking_uri(tracking_uri)
        self.shown_uri = redact_url(self.uri)  # for messages, results and logs: never the password
        artifact_root = prepare_store(self.uri)
        self.mlflow = mlflow_module(self.uri)

        def open_experiment() -> str:
            found = self.mlflow.get_experiment_by_name(experiment)
            if found is not None:
                if EXPERIMENT_KIND[0] not in found.tags:  # made by an older riskmodel: a kind the user chose stays
                    self.mlflow.MlflowClient().set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
                return str(found.experiment_id)
            location = f"{artifact_root}/{experiment}" if artifact_root else None
            tags = dict([EXPERIMENT_KIND])
            return str(self.mlflow.create_experiment(experiment, artifact_location=location, tags=tags))

        try:
            # several tune workers may open a new shared store, or create the experiment, together
            with sqlite_setup_lock(self.uri):
                seed_new_store(self.uri)  # a new local store: migrated once per MLflow version, copied here
                self.experiment_id = retry_first_use(open_experiment)
        except Exception as exc:  # a broken URI or store must read as a user error, not a traceback
            raise UserInputError(
                f"cannot open the MLflow tracking store {self.shown_uri}: {redact_text(str(exc), self.uri)}"
            ) from None
        self.stale_runs = self._close_stale_runs()

    def _owner_tags(self) -> dict[str, str]:
        """Which process owns a run, so that a later start can tell a crashed run from a live one."""
        return {f"{TAG_PREFIX}pid": str(os.getpid()), f"{TAG_PREFIX}host": socket.gethostname()}

    def _close_stale_runs(self) -> list[str]:
        """Mark KILLED the RUNNING runs of this experiment whose process on this host is gone.

        A run killed with SIGKILL (or by a power cut) cannot close itself; it is closed here, on the
        next start. Runs of live processes, and of other hosts, are left alone.
        """
        client = self.mlflow.MlflowClient()
        running = client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10_000
        )
        host, closed = socket.gethostname(), []
        for run in running:
            tags = run.data.tags
            pid = tags.get(f"{TAG_PREFIX}pid", "")
            if tags.get(f"{TAG_PREFIX}host") == host and pid.isdigit() and not process_alive(int(pid)):
                self._set_tags(run.info.run_id, {f"{TAG_PREFIX}closed_by": "next start: its process had ended"})
                client.set_terminated(run.info.run_id, status="KILLED")
                closed.append(run.info.run_id)
        return closed

    @contextmanager
    def parent(self, name: str, tags: Mapping[str, str]) -> Iterator[str]:
        """The parent run; it is marked FAILED if the block raises, KILLED on Ctrl-C, and KILLED
        with a ``riskmodel.refused`` note when the PHI guard refuses something (not a failure:
        nothing was written that the guard had not passed)."""
        self.guard.check("run name", name)
        self.guard.check("tags", dict(tags))
        try:
            with self.mlflow.start_run(experiment_id=self.experiment_id, run_name=name, tags=self._owner_tags()) as run:
                self.mlflow.set_tags({f"{TAG_PREFIX}{k}": v for k, v in tags.items()})
                try:
                    yield run.info.run_id
                except KeyboardInterrupt:
                    self.mlflow.end_run(status="KILLED")
                    raise
                except PrivacyError as exc:
                    self.refused(run.info.run_id, exc)
                    raise
        except KeyboardInterrupt:  # one landing while a run opened or closed: none of ours stays RUNNING
            while self.mlflow.active_run() is not None:
                self.mlflow.end_run(status="KILLED")
            self.close_own_runs("KILLED")
            raise

    @contextmanager
    def child(self, name: str) -> Iterator[str]:
        """A nested run for one (endpoint, family); ended like its parent when the PHI guard refuses."""
        self.guard.check("run name", name)
        with self.mlflow.start_run(
            experiment_id=self.experiment_id, run_name=name, nested=True, tags=self._owner_tags()
        ) as run:
            try:
                yield run.info.run_id
            except PrivacyError as exc:
                self.refused(run.info.run_id, exc)
                raise

    def refused(self, run_id: str, refusal: PrivacyError) -> None:
        """End run ``run_id`` as KILLED, noting the PHI guard's refusal (its field and rule: a
        refusal never quotes the value). The fluent API's active run is ended if it is this one."""
        client = self.mlflow.MlflowClient()
        self._set_tags(run_id, {f"{TAG_PREFIX}refused": str(refusal).removeprefix("error: ")[:500]})
        active = self.mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            self.mlflow.end_run(status="KILLED")
        else:
            client.set_terminated(run_id, status="KILLED")

    def _checked(
        self,
        params: Mapping[str, Any] | None,
        metrics: Mapping[str, float] | None,
        tags: Mapping[str, str] | None,
    ) -> tuple[Mapping[str, Any], Mapping[str, float], Mapping[str, str]]:
        """The PHI guard on everything about to be logged (metric values are numbers: names only)."""
        params, metrics, tags = params or {}, metrics or {}, tags or {}
        self.guard.check("params", dict(params))
        for name in metrics:  # a refused name is not quoted: it would carry what the guard found
            self.guard.check_text("a metric name", name)
        self.guard.check("tags", dict(tags))
        return params, metrics, tags

    def log(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params (values cut to MLflow's limit), finite metrics, and riskmodel.* tags."""
        run = self.mlflow.active_run()
        if run is None:
            raise RuntimeError("Tracker.log needs an active run (parent or child)")
        # one batch (one transaction of the store), as the fluent log_params, log_metrics and set_tags
        # would write them one call each
        self.log_to(run.info.run_id, params=params, metrics=metrics, tags=tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact (configs, tables of aggregates)."""
        self.guard.check_text("an artifact's file name", artifact_file)
        self.guard.check_text(f"artifact {artifact_file}", text)
        self.mlflow.log_text(text, artifact_file)

    # ------------------------------------------------------------------ explicit runs (thread-safe)
    # ``tune`` runs trials in threads; MLflow's fluent API keeps one active run per process, so
    # these methods name the run explicitly, through the client.
    def open_run(
        self, name: str, tags: Mapping[str, str], *, parent_id: str | None = None, run_id: str | None = None
    ) -> str:
        """Start a run (nested under ``parent_id``), or reopen ``run_id``; returns its ID."""
        self.guard.check("run name", name)
        self.guard.check("tags", dict(tags))
        client = self.mlflow.MlflowClient()
        all_tags = {**self._owner_tags(), **{f"{TAG_PREFIX}{k}": v for k, v in tags.items()}}
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            self._set_tags(run_id, all_tags)
            return run_id
        if parent_id is not None:
            all_tags["mlflow.parentRunId"] = parent_id
        run = client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return str(run.info.run_id)

    def log_to(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        """Params, finite metrics and riskmodel.* tags of one named run, checked by the PHI guard."""
        import math
        import time

        from mlflow.entities import Metric, Param, RunTag

        params, metrics, tags = self._checked(params, metrics, tags)
        now = int(time.time() * 1000)
        self.mlflow.MlflowClient().log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(v)],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(f"{TAG_PREFIX}{k}", str(v)) for k, v in tags.items()],
        )

    def _set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Tags of a run that other workers may be writing too (a shared tuning study's parent).

        One ``log_batch``, never ``set_tag``: MLflow's SQL store reads-then-inserts a single tag,
        so two workers writing the same key at once collide on its primary key, and only the batch
        path retries that collision (measured on PostgreSQL: 4-6 of 8 threads failed with set_tag).
        """
        from mlflow.entities import RunTag

        self.mlflow.MlflowClient().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def close_run(self, run_id: str, status: str = "FINISHED") -> None:
        """End a named run as FINISHED, FAILED or KILLED."""
        self.mlflow.MlflowClient().set_terminated(run_id, status=status)

    def close_own_runs(self, status: str = "KILLED") -> list[str]:
        """End every run of this experiment that this process opened and left RUNNING.

        An interrupt can land between the store creating a run and its ID reaching the caller, or
        in the middle of closing one; the owner tags written with the run find it all the same.
        """
        client = self.mlflow.MlflowClient()
        owner = self._owner_tags()
        running = client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10_000
        )
        closed = []
        for run in running:
            if all(run.data.tags.get(k) == v for k, v in owner.items()):
                client.set_terminated(run.info.run_id, status=status)
                closed.append(run.info.run_id)
        return closed

    def run_status(self, run_id: str) -> str:
        """The status of a run (RUNNING, FINISHED, FAILED, KILLED)."""
        return str(self.mlflow.MlflowClient().get_run(run_id).info.status)

    def log_text_to(self, run_id: str, text: str, artifact_file: str) -> None:
        """A text artifact of one named run."""
        self.guard.check_text("an artifact's file name", artifact_file)
        self.guard.check_text(f"artifact {artifact_file}", text)
        self.mlflow.MlflowClient().log_text(run_id, text, artifact_file)

    def log_model_to(self, run_id: str, model: RiskModel) -> str:
        """Save ``model`` and log it as the pyfunc model of run ``run_id``; returns its URI."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, self.mlflow.start_run(run_id=run_id):
            uri = self.log_model(model, model.save(Path(tmp) / "riskmodel"))
            self._set_tags(run_id, {f"{TAG_PREFIX}model_uri": uri})
        # start_run(run_id) ends the run as FINISHED on exit; the caller decides its final status
        self.mlflow.MlflowClient().update_run(run_id, status="RUNNING")
        return uri

    def register(self, model_uri: str, name: str) -> str:
        """Register a logged model under ``name``; returns ``models:/<name>/<version>``."""
        self.guard.check("registered model name", name)
        try:
            version = self.mlflow.register_model(model_uri, name).version
        except Exception as exc:
            refused = redact_text(str(exc), self.uri)
            raise UserInputError(f"--register {name}: the registry refused it ({refused})") from None
        return f"models:/{name}/{version}"

    def log_bytes(self, data: bytes, artifact_file: str) -> None:
        """A binary artifact (a PNG figure), checked by the PHI guard like any other file."""
        import tempfile

        self.guard.check_text("an artifact's file name", artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            path.write_bytes(data)
            self.guard.check_file(path, f"artifact {artifact_file}")
            folder = str(Path(artifact_file).parent)
            self.mlflow.log_artifact(str(path), None if folder == "." else folder)

    def log_files(self, files: Sequence[tuple[str, str | bytes]]) -> None:
        """Several artifacts of the active run in one upload, each checked by the PHI guard as
        :meth:`log_text` (text: configs, tables of aggregates) or :meth:`log_bytes` (a PNG figure)
        checks it; nothing is uploaded unless every one passes. The files are the bytes those two
        would log (text as UTF-8)."""
        import posixpath
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files:
                self.guard.check_text("an artifact's file name", name)
                normal = posixpath.normpath(name)
                if normal.startswith(("/", "..")):
                    raise ValueError(f"artifact {name}: not a path inside the run's artifacts")
                path = Path(tmp, normal)
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                    self.guard.check_file(path, f"artifact {name}")
                else:
                    self.guard.check_text(f"artifact {name}", content)
                    path.write_text(content, encoding="utf-8")
            self.mlflow.log_artifacts(tmp)

    def log_model(self, model: RiskModel, model_dir: Path) -> str:
        """Log the pyfunc model wrapping ``model_dir``; return its ``runs:/`` URI."""
        import warnings

        self.guard.check_tree(Path(model_dir), "model")

        from mlflow.models import ModelSignature
        from mlflow.types.schema import AnyType, ColSpec, Schema

        # Input columns are typed Any: the cohort contract validates them (with row-level messages),
        # and MLflow's own casting would refuse, e.g., whole-number ages read as int64.
        any_type = AnyType()  # type: ignore[no-untyped-call]
        in_cols: list[Any] = [ColSpec(any_type, name, required=required) for name, required in input_columns(model)]
        out_cols: list[Any] = [ColSpec("double", "risk_score")] + [
            ColSpec("double", f"S_{h:g}") for h in model.horizons
        ]
        inputs, outputs = Schema(in_cols), Schema(out_cols)
        with warnings.catch_warnings():
            # MLflow asks for an input example; logging one would write patient rows, so we never do.
            warnings.filterwarnings("ignore", message=".*input example.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
            self.mlflow.pyfunc.log_model(
                name="model",
                python_model=str(ENTRY_FILE),
                artifacts={"riskmodel": str(model_dir)},
                signature=ModelSignature(inputs=inputs, outputs=outputs),
                pip_requirements=requirements(),
            )
        run = self.mlflow.active_run()
        return f"runs:/{run.info.run_id}/model"
