"""How the bundled 36-patient cohort was reconstructed from the study's published figures.

``study`` holds the study's facts (factor groupings, landmarks, published targets);
``reconstruct`` draws the marginals and ``calibrate`` anneals outcomes towards the published
Kaplan-Meier and log-rank tables. It sits above ``models`` (the calibration fits Cox models), so
nothing in :mod:`riskmodel.cohort` itself imports it.
"""
