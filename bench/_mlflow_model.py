"""The MLflow side of bench/serve.py; runs in its own venv (bench/.venvs/mlflow).

Saves the LightGBM text model as an MLflow model with the ``mlflow.lightgbm``
flavour (what ``log_model`` writes into a run, without a tracking server), with
a signature of the feature columns inferred from the benchmark's record, so
that ``mlflow models serve`` checks each request against it as it would in
production::

    python bench/_mlflow_model.py model.txt body.json OUT_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import lightgbm as lgb
import mlflow.lightgbm
import pandas as pd
from mlflow.models import infer_signature


def main() -> None:
    model_file, body_file, out = (Path(a) for a in sys.argv[1:4])
    booster = lgb.Booster(model_file=str(model_file))
    records = json.loads(body_file.read_text())["records"]
    frame = pd.DataFrame(records)[booster.feature_name()]
    signature = infer_signature(frame, booster.predict(frame))
    if out.exists():
        shutil.rmtree(out)
    mlflow.lightgbm.save_model(booster, str(out), signature=signature)
    print(json.dumps({"mlflow": mlflow.__version__, "lightgbm": lgb.__version__}))


if __name__ == "__main__":
    main()
