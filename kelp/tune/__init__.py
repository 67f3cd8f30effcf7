"""`kelp tune`: Optuna studies over a run's trees, CNN or stacker, on the run's own folds.

``space`` (what each target searches, where each value goes in the config) and ``config``
(the ``[tune]`` table) import no Optuna; ``objective`` runs one trial in a scratch folder
and scores it with the nested out-of-fold figure; ``study`` opens, runs and resumes the
study and writes its outputs. Optuna is the extra ``kelp[tune]``.
"""
