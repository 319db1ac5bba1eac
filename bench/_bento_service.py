"""The BentoML side of bench/serve.py; runs in its own venv (bench/.venvs/bentoml).

A minimal BentoML 1.4 service around the same LightGBM text model: one API that
takes ``{"records": [{feature: value, ...}]}`` (the body ``setpoint serve``
takes) and returns the booster's scores. bench/serve.py runs it as::

    BENCH_MODEL=model.txt BENCH_WORKERS=2 OMP_NUM_THREADS=1 \\
        bentoml serve _bento_service:Booster --working-dir bench --port P
"""

from __future__ import annotations

import os

import bentoml
import lightgbm as lgb
import numpy as np


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "2")))
class Booster:
    def __init__(self) -> None:
        self.booster = lgb.Booster(model_file=os.environ["BENCH_MODEL"])
        self.features = self.booster.feature_name()

    @bentoml.api
    def predict(self, records: list[dict[str, float]]) -> list[float]:
        rows = np.array([[r[name] for name in self.features] for r in records], dtype=np.float64)
        scores: list[float] = self.booster.predict(rows, num_threads=1).tolist()
        return scores
