"""The bare handler of bench/serve.py: the practical ceiling of serving this model.

A Starlette app with one route that parses the JSON body, builds one row in the
booster's feature order and calls ``Booster.predict`` with one thread; no
validation, no logging, nothing else. bench/serve.py runs it as::

    BENCH_MODEL=model.txt OMP_NUM_THREADS=1 python -m uvicorn _bare_app:app \\
        --app-dir bench --workers 2 --loop uvloop --http httptools --no-access-log

``POST /predict`` takes ``{"records": [{feature: value, ...}]}`` (the body
``setpoint serve`` takes) and answers ``{"scores": [p, ...]}``.
"""

from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BOOSTER = lgb.Booster(model_file=os.environ["BENCH_MODEL"])
FEATURES = BOOSTER.feature_name()


async def predict(request: Request) -> Response:
    records = orjson.loads(await request.body())["records"]
    rows = np.array([[record[name] for name in FEATURES] for record in records], dtype=np.float64)
    scores = np.asarray(BOOSTER.predict(rows, num_threads=1))
    return Response(orjson.dumps({"scores": scores.tolist()}), media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])
