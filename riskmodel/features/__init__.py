"""Model features from a validated cohort, as scikit-learn transformers.

* :class:`ClinicalFeatures`: the bundled brachytherapy study's named feature blocks and sets;
* :class:`DeclaredFeatures`: the covariates an experiment declares (any clinical cohort), each
  with its encoding (linear, log, restricted cubic spline, threshold; categorical one-hot
  against the reference level) and missing-data policy.
"""

from __future__ import annotations

from riskmodel.features.clinical import FEATURE_BLOCKS, FEATURE_SETS, ClinicalFeatures, resolve_blocks
from riskmodel.features.declared import DeclaredEncoding, DeclaredFeatures, DeclaredInputs

__all__ = [
    "FEATURE_BLOCKS",
    "FEATURE_SETS",
    "ClinicalFeatures",
    "DeclaredEncoding",
    "DeclaredFeatures",
    "DeclaredInputs",
    "resolve_blocks",
]
