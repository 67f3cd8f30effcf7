"""`kelp tune`: Optuna studies over a run's trees, CNN or stacker, on the run's own folds.

``space`` (what each target searches, where each value goes in the config; no Optuna),
``objective`` (one trial in a scratch folder, scored with the nested out-of-fold figure)
and ``study`` (opens, runs and resumes the study, writes its outputs). The ``[tune]`` table
is :class:`kelp.pipeline.config.TuneConfig`; Optuna is the extra ``kelp[tune]``.
"""
