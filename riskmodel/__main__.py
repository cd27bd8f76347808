"""``python -m riskmodel``: the same as the ``riskmodel`` command."""

from riskmodel.cli import run

run()
