"""One-row LightGBM prediction through the C library's "fast" single-row entry points.

``Booster.predict`` sets up a predictor, checks and copies its input on every
call: for one 30-feature row of a 200-tree model that wrapper costs about three
times the trees themselves. A server answering one record per request pays it
on every request, so :class:`RowPredictor` keeps LightGBM's own prepared
single-row configuration (``LGBM_BoosterPredictForMatSingleRowFastInit``) and
calls only ``LGBM_BoosterPredictForMatSingleRowFast`` per row.

Only LightGBM's public C API (``c_api.h``) is used, on a booster of its own
loaded from the model text, so nothing here depends on the Python package's
private attributes. Each call is serialized by a lock, because the prepared
configuration owns one output buffer.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from pathlib import Path

import numpy as np
import numpy.typing as npt

from setpoint.errors import TrainingError

__all__ = ["RowPredictor"]

FloatArray = npt.NDArray[np.float64]

_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL: probabilities for classifiers, values otherwise
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


def _library() -> ctypes.CDLL:
    import lightgbm

    # The wheel ships the library beside the package; the process has loaded it
    # already, so this returns the same handle.
    found = sorted((Path(lightgbm.__file__).parent / "lib").glob("lib_lightgbm.*"))
    if not found:
        raise TrainingError("The LightGBM shared library was not found beside the package.")
    lib = ctypes.CDLL(str(found[0]))
    lib.LGBM_GetLastError.restype = ctypes.c_char_p
    return lib


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != 0:
        raise TrainingError(f"LightGBM: {lib.LGBM_GetLastError().decode('utf-8', 'replace')}")


def _free(lib: ctypes.CDLL, config: ctypes.c_void_p, booster: ctypes.c_void_p) -> None:
    if config.value:
        lib.LGBM_FastConfigFree(config)
    if booster.value:
        lib.LGBM_BoosterFree(booster)


class RowPredictor:
    """Predicts one row at a time with the model in ``model_text``.

    ``n_outputs`` is the number of values per row (the class count for
    multiclass, else 1).

    >>> import lightgbm as lgb
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)); y = (x[:, 0] > 0).astype(int)
    >>> booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y), 5)
    >>> fast = RowPredictor(booster.model_to_string(), n_features=3, n_outputs=1)
    >>> bool(np.allclose(fast.predict(x[:1]), booster.predict(x[:1])))
    True
    """

    def __init__(self, model_text: str, *, n_features: int, n_outputs: int) -> None:
        self.n_features = n_features
        self.n_outputs = n_outputs
        self._lib = lib = _library()
        self._booster = ctypes.c_void_p()
        self._config = ctypes.c_void_p()
        iterations = ctypes.c_int()
        _check(
            lib,
            lib.LGBM_BoosterLoadModelFromString(
                ctypes.c_char_p(model_text.encode("utf-8")),
                ctypes.byref(iterations),
                ctypes.byref(self._booster),
            ),
        )
        weakref.finalize(self, _free, lib, self._config, self._booster)
        _check(
            lib,
            lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                self._booster,
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),  # from the first iteration
                ctypes.c_int(-1),  # to the last
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._config),
            ),
        )
        self._out = np.zeros(n_outputs, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64()
        self._call = lib.LGBM_BoosterPredictForMatSingleRowFast
        self._lock = threading.Lock()

    def predict(self, matrix: FloatArray) -> FloatArray:
        """What ``Booster.predict`` returns for a ``(1, n_features)`` matrix."""
        if matrix.shape != (1, self.n_features):
            raise TrainingError(
                f"RowPredictor takes one row of {self.n_features} features; "
                f"got shape {matrix.shape}."
            )
        row = np.ascontiguousarray(matrix[0], dtype=np.float64)
        with self._lock:
            status = self._call(
                self._config,
                row.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(self._out_len),
                self._out_ptr,
            )
            _check(self._lib, status)
            out = self._out.copy()
        return out.reshape(1, -1) if self.n_outputs > 1 else out
