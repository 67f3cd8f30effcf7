"""The U-Net: one per fold on the feature stack's channels, with out-of-fold logits.

Modules, one idea each:

- :mod:`kelp.cnn.config`: :class:`CnnConfig`, the stage's typed config;
- :mod:`kelp.cnn.model`: the smp model factory (any tile size, fast offline failures);
- :mod:`kelp.cnn.channels`, :mod:`kelp.cnn.normalise`, :mod:`kelp.cnn.data`: inputs;
- :mod:`kelp.cnn.losses`, :mod:`kelp.cnn.optim`, :mod:`kelp.cnn.device`,
  :mod:`kelp.cnn.loop`: training parts;
- :mod:`kelp.cnn.train`: ``train_cnn`` (the ``kelp train-cnn`` stage), with
  :mod:`kelp.cnn.fold` (one fold's parts and progress), :mod:`kelp.cnn.determinism`
  (seeds, deterministic kernels, RNG state for resuming), :mod:`kelp.cnn.manifests` (keys
  and records) and :mod:`kelp.cnn.oof` for the out-of-fold logits;
- :mod:`kelp.cnn.ensemble`: the fold ensemble every prediction goes through;
- :mod:`kelp.cnn.predict`, :mod:`kelp.cnn.tta`: ``predict_cnn`` (``kelp predict-cnn``);
- :mod:`kelp.cnn.checkpoint`, :mod:`kelp.cnn.history`, :mod:`kelp.cnn.inputs`: artifacts
  (paths come from :class:`kelp.layout.RunLayout`).

Only the config is imported here: torch loads when training or prediction starts, so the
CLI's help stays fast.
"""

from kelp.cnn.config import DEFAULT_CHANNELS, CnnConfig

__all__ = ["DEFAULT_CHANNELS", "CnnConfig"]
