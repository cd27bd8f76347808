"""The ground floor: crash-safe files, YAML reading and pseudonyms, used by every other floor.

Nothing here knows about cohorts, models or MLflow.
"""
