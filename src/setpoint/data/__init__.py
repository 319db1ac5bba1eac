"""Data: read sources, infer schemas, validate batches, join features in time.

Pure functions on DataFrames; nothing here touches the metadata store.

- :mod:`setpoint.data.sources`: ``read_source`` for CSV, Parquet, SQL and frames.
- :mod:`setpoint.data.schema`: ``Schema`` and ``infer_schema``.
- :mod:`setpoint.data.validate`: ``validate_batch`` and its ``ValidationReport``.
- :mod:`setpoint.data.asof`: ``asof_join``, the point-in-time join.
"""

__all__: list[str] = []
