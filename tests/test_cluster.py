"""--cluster: a real Dask scheduler and two workers, started as a user would (``dask scheduler``,
``dask worker ADDRESS``) as separate processes on 127.0.0.1, give the same results as a local run.

The reference of every comparison is the same computation run locally in this process (the
cluster adds nothing to the statistics: it only moves where the units run), so equality is exact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.cohort import bundled_cohort_path
from riskmodel.core.parallel import parallel_map, using_cluster
from tests.conftest import REPO

pytest.importorskip("distributed")


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler --port 0`` (a free port) and two ``dask worker ADDRESS --nworkers 1 --nthreads 1``."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    file = folder / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [
        _start(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(file), *common],
            folder / "scheduler.log",
            env,
        )
    ]
    try:
        for _ in range(300):
            if file.exists() and file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for i in range(2):
            worker = ["worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1"]
            worker += ["--local-directory", str(folder / f"w{i}"), *common]
            procs.append(_start(worker, folder / f"w{i}.log", env))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _task_prefixes(address: str) -> set[str]:
    from distributed import Client

    def prefixes(dask_scheduler: object) -> list[str]:
        return list(dask_scheduler.task_prefixes)  # type: ignore[attr-defined]

    with Client(address, timeout="30s") as client:
        return set(client.run_on_scheduler(prefixes))


def _square_after(delay_and_x: tuple[float, int]) -> int:
    time.sleep(delay_and_x[0])
    return delay_and_x[1] ** 2


@pytest.mark.slow
def test_results_come_back_in_submission_order(scheduler: str) -> None:
    # the first items are the slowest: finished first is not returned first
    items = [(0.3 - 0.05 * i, i) for i in range(6)]
    with using_cluster(scheduler):
        got = list(parallel_map(_square_after, items))
    assert got == [i * i for i in range(6)]


def _experiment(tmp: Path) -> Path:
    path = tmp / "small.yaml"
    path.write_text(
        "name: small\nendpoints: [lc]\nfeatures: {set: study}\nlandmark_months: 3\n"
        "models:\n  cox: {penalty: 0.1}\n  rsf: {n_estimators: 10, min_samples_leaf: 3}\n"
        "evaluation: {n_splits: 3, n_repeats: 1, bootstrap: 5}\nhorizons: [6, 12]\nseed: 2013\n"
    )
    return path


def _train(experiment: Path, store: Path, summary: Path, extra: list[str]) -> dict[tuple[str, str], dict]:
    args = ["train", str(experiment), "--tracking-uri", f"sqlite:///{store}/mlflow.db", "--summary-json", str(summary)]
    result = CliRunner().invoke(app, [*args, "--models", "cox,rsf", *extra])
    assert result.exit_code == 0, result.output
    runs = json.loads(summary.read_text())["runs"]
    return {(r["endpoint"], r["family"]): r for r in runs}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.slow
def test_train_and_score_on_the_cluster_equal_the_local_run(
    scheduler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = _experiment(tmp_path)
    monkeypatch.delenv("RISKMODEL_DASK_ADDRESS", raising=False)
    local = _train(experiment, tmp_path / "local", tmp_path / "local.json", [])
    # the address from the environment, as a batch job would set it
    monkeypatch.setenv("RISKMODEL_DASK_ADDRESS", scheduler)
    remote = _train(experiment, tmp_path / "remote", tmp_path / "remote.json", [])
    assert local.keys() == remote.keys() == {(e, f) for e in ("lc",) for f in ("cox", "rsf")}
    for key, run in local.items():
        theirs = remote[key]["metrics"]
        assert run["metrics"].keys() == theirs.keys()
        differ = {m: (v, theirs[m]) for m, v in run["metrics"].items() if not _same(v, theirs[m])}
        assert not differ, (key, differ)
    # the units really ran on the workers: folds, resamples, importance columns
    assert {"one_fold", "one_resample", "feature_drops"} <= _task_prefixes(scheduler)  # dask drops the "_"

    # score: a Parquet dataset of two partitions, mapped across the workers
    monkeypatch.delenv("RISKMODEL_DASK_ADDRESS")
    patients = pd.read_csv(bundled_cohort_path())
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(patients)), 2)):
        patients.iloc[part].to_parquet(dataset / f"part-{i}.parquet", index=False)
    uri = ["--tracking-uri", f"sqlite:///{tmp_path / 'local'}/mlflow.db"]
    models = [a for key in (("lc", "cox"), ("lc", "rsf")) for a in ("--model", local[key]["model_uri"])]
    assert all(key in local for key in (("lc", "cox"), ("lc", "rsf")))
    out = tmp_path / "scores"
    result = CliRunner().invoke(
        app, ["score", *models, "--patients", str(dataset), "--out", str(out), "--cluster", scheduler, *uri]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["part-0.csv", "part-1.csv"]
    assert "score_partition" in _task_prefixes(scheduler)
    for i in range(2):
        alone = tmp_path / f"alone-{i}.csv"
        one = ["score", *models, "--patients", str(dataset / f"part-{i}.parquet"), "--out", str(alone), *uri]
        result = CliRunner().invoke(app, one)
        assert result.exit_code == 0, result.output
        assert (out / f"part-{i}.csv").read_text() == alone.read_text()
    scored = pd.concat(pd.read_csv(out / f"part-{i}.csv") for i in range(2))
    assert len(scored) == 2 * len(patients)  # every patient, by both models


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("riskmodel.core.parallel.CONNECT_TIMEOUT", "1s")
    result = CliRunner().invoke(
        app, ["train", str(_experiment(tmp_path)), "--cluster", "tcp://127.0.0.1:9", "--models", "cox"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "cannot reach a Dask scheduler" in lines[0]
    assert "Traceback" not in result.output


def test_without_cluster_dask_is_not_imported() -> None:
    code = (
        "import sys, riskmodel.cli, riskmodel.validation, riskmodel.tuning.objective, riskmodel.scoring.partitions;"
        "from typer.testing import CliRunner;"
        "r = CliRunner().invoke(riskmodel.cli.app, ['train', '--help']); assert r.exit_code == 0;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RISKMODEL_DASK_ADDRESS", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
