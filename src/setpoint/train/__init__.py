"""Training: from a DataFrame and a recipe to a tested, calibrated, serialisable model.

Import from the modules, which keeps light ones (``metrics``, ``bootstrap``)
free of LightGBM and scikit-learn:

* ``trainer.train_model``: the whole pipeline, returning a ``TrainResult``;
* ``model.TabularModel``: a trained model, its files and predictions;
* ``preprocess.Preprocessor``, ``split.time_split``, ``calibrate.Calibrator``,
  ``calibrate.choose_threshold``: the steps, usable alone;
* ``metrics.compute_metrics``, ``metrics.segment_metrics``,
  ``bootstrap.paired_bootstrap``: evaluation and model comparison;
* ``tune.tune``: Optuna search (the ``tune`` extra).
"""

__all__: list[str] = []
