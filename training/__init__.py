"""Training: everything that only a training run needs, above the inference pipeline it reuses.

- :mod:`training.trainer`: a poppy run and a land-cover pretraining run, and :func:`~training.trainer.fit`.
- :mod:`training.loop`: optimiser, schedule, one epoch of updates, exact resumption state.
- :mod:`training.evaluate`: validation on whole orthomosaics through the inference path, built on
  :mod:`training.matching` (plot matching), :mod:`training.pixels` (pixel counts) and :mod:`training.report`
  (threshold sweep and choice, tables); :mod:`training.classes` (per-class IoU of land-cover models).
- :mod:`training.mining`: hard-negative mining; :mod:`training.judge`: the second stage.
"""
