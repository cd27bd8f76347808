"""MLflow "models from code" entry: MLflow runs this file to build the pyfunc model (no pickle)."""

from riskmodel.tracking import set_pyfunc_model

set_pyfunc_model()
