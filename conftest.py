"""Root pytest set-up, shared by the tests and the doctests in riskmodel/."""

import os

# a fixed pseudonym salt, so tests never create the per-installation salt file in $HOME
os.environ.setdefault("RISKMODEL_SALT", "riskmodel-tests")
