"""``--cluster ADDRESS`` (or ``$RISKMODEL_DASK_ADDRESS``): the option shared by train, tune and score."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from riskmodel.core.parallel import ADDRESS_VARIABLE, cluster_address, using_cluster
from riskmodel.core.redact import redact_url

__all__ = ["ClusterOption", "cluster_option", "on_cluster"]

F = TypeVar("F", bound=Callable[..., Any])

ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Run the independent units of work (CV folds, bootstrap resamples, permutation importance, "
        "nested-CV outer folds, tuning folds; score: Parquet partitions) on the Dask scheduler at ADDRESS "
        f"(tcp://host:8786). Default: ${ADDRESS_VARIABLE}; unset: this machine. Needs riskmodel[cluster] "
        "here and on every worker. Patient data reach the workers' memory only.",
        metavar="ADDRESS",
    ),
]


@contextlib.contextmanager
def on_cluster(option: str | None) -> Iterator[bool]:
    """Connect to the cluster asked for (if any) for the block, and say so on stderr."""
    address = cluster_address(option)
    with using_cluster(address) as cluster:
        if cluster is not None:
            typer.echo(f"on the Dask cluster at {redact_url(address or '')} ({cluster.workers()} workers)", err=True)
        yield cluster is not None


def cluster_option(fn: F) -> F:
    """Give a command the ``--cluster`` option: its whole body runs with the cluster in use."""

    @functools.wraps(fn)
    def wrapper(*args: Any, cluster: str | None = None, **kwargs: Any) -> Any:
        with on_cluster(cluster):
            return fn(*args, **kwargs)

    signature = inspect.signature(fn, eval_str=True)
    option = inspect.Parameter("cluster", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ClusterOption)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**get_type_hints(fn, include_extras=True), "cluster": ClusterOption}
    return wrapper  # type: ignore[return-value]
