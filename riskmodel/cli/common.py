"""What every command shares: the Typer app, turning riskmodel's errors into exit codes, and
stopping cleanly on SIGTERM."""

from __future__ import annotations

import functools
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from riskmodel.core.files import disk_error
from riskmodel.core.version import __version__
from riskmodel.errors import RiskModelError, RiskModelWarning, one_line

__all__ = [
    "HorizonsOption",
    "ModelOption",
    "TrackingUriOption",
    "app",
    "csv_option",
    "install_handlers",
    "months_option",
    "stop_if_terminated",
    "user_errors",
]

app = typer.Typer(
    name="riskmodel",
    help="Outcome prediction and risk modelling for I-125 seed brachytherapy (local control and "
    "overall survival). Figures from small cohorts are exploratory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # typer leaves an absent --help as None and, to coerce that None, imports pydantic (0.1 s) on
    # every group a command passes through; an explicit False is a bool it lets through as it is
    context_settings={"default_map": {"help": False, "config": {"help": False}, "models": {"help": False}}},
)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn riskmodel's own errors into a message on stderr and their exit code; no traceback.

    Each line of a message is bounded (:func:`riskmodel.errors.one_line`), and a full disk met
    anywhere (the tracking store, a library's own write) is one line with exit code 2.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RiskModelError as exc:
            typer.echo("\n".join(one_line(line, 1000) for line in str(exc).splitlines()), err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            friendly = disk_error(exc, Path(str(exc.filename or "the output")))
            if friendly is None:
                raise
            typer.echo(one_line(str(friendly)), err=True)
            raise typer.Exit(friendly.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; runs already finished are kept, the current one is marked KILLED", err=True)
            raise typer.Exit(143 if _TERMINATED else 130) from None

    return wrapper  # type: ignore[return-value]


_TERMINATED = False


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (kill, a scheduler's timeout) ends the work like Ctrl-C: runs are closed, not left RUNNING."""
    global _TERMINATED
    _TERMINATED = True
    raise KeyboardInterrupt


def stop_if_terminated() -> None:
    """Raise again at a safe point if SIGTERM came. Python prints and drops an exception raised
    while it runs a finaliser (a weakref callback, ``__del__``), so the handler's own raise can be
    lost; long work calls this between steps (its progress callback)."""
    if _TERMINATED:
        raise KeyboardInterrupt


def _version(value: bool) -> None:
    if value:
        typer.echo(f"riskmodel {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """riskmodel: survival models for seed brachytherapy cohorts."""
    _SHOWN.clear()


def csv_option(value: str | None, name: str, *, lower: bool = True) -> list[str] | None:
    """A comma-separated option as a list (lower-case names unless ``lower=False``; None when not given)."""
    if value is None:
        return None
    items = [v.strip().lower() if lower else v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter("give a comma-separated list", param_hint=name)
    return items


def months_option(value: str | None, name: str = "--horizons") -> list[float] | None:
    """A comma-separated option of months as numbers (None when not given: the model's own)."""
    if value is None:
        return None
    try:
        return [float(h) for h in value.split(",") if h.strip()]
    except ValueError:
        raise typer.BadParameter(f"not a list of numbers: {value!r}", param_hint=name) from None


# the options the commands that read a saved model share, each with its help once
ModelOption = Annotated[str, typer.Option(help="runs:/<run_id>/model, models:/<name>/<version>, or a model folder.")]
HorizonsOption = Annotated[
    str | None,
    typer.Option(help="Comma-separated months after the model's time zero. Default: the model's horizons."),
]
TrackingUriOption = Annotated[str | None, typer.Option(help="MLflow tracking URI for runs:/ and models:/.")]


_default_showwarning = warnings.showwarning
# the lines of riskmodel's warnings already printed by this command: each prints once, however often
# the library meets it (scoring validates the same patients once per model, page and what-if value)
_SHOWN: set[str] = set()


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """riskmodel's own warnings as plain "warning: ..." lines, without Python's file and source line."""
    if issubclass(category, RiskModelWarning):
        for line in str(message).splitlines():
            text = line if line.startswith("warning") else f"warning: {line}"
            if text not in _SHOWN and not _is_count(line):
                _SHOWN.add(text)
                typer.echo(text, err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def _is_count(line: str) -> bool:
    """A headline counting the lines under it ("patients: 2 warnings:"): the lines say it all."""
    return line.rstrip().endswith(("warning:", "warnings:")) and " warning" in line


def _unraisable(info: Any) -> None:
    """Drop the KeyboardInterrupt of a SIGTERM that landed in a finaliser (re-raised at the next
    step, see :func:`stop_if_terminated`); report anything else as Python does."""
    if _TERMINATED and info.exc_type is KeyboardInterrupt:
        return
    sys.__unraisablehook__(info)


def install_handlers() -> None:
    """SIGTERM ends work like Ctrl-C; riskmodel's warnings print as plain lines."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.unraisablehook = _unraisable
    warnings.showwarning = _show_warning
