"""The ``riskmodel`` command line: one module per command group, each only parsing options and
calling library functions."""

from __future__ import annotations

import sys

from riskmodel.cli import config, data, evaluate, init, models, nomogram, report, score, serve, train, tune, update
from riskmodel.cli.common import app, install_handlers

__all__ = ["app", "run"]

# imported to register them on app
_COMMANDS = (config, data, evaluate, init, models, nomogram, report, score, serve, train, tune, update)


def run() -> None:
    """Console-script entry point."""
    install_handlers()
    sys.exit(app())
