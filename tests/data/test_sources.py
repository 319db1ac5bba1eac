"""read_source: good files read, and every bad one fails with a message that says where."""

from __future__ import annotations

import gzip
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from setpoint.config.spec import SourceSpec
from setpoint.data.sources import read_source
from setpoint.errors import InvalidParameterError, SchemaError, SourceError


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_csv_reads_with_types(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ok.csv",
        "id,x,city,when,flag\n"
        "1,1.5,Paris,2024-01-01T10:00:00Z,true\n"
        "2,,NA,2024-01-02T10:00:00Z,\n"
        "3,2.5,Oslo,2024-01-03T10:00:00Z,false\n",
    )
    df = read_source(path)
    assert list(df.columns) == ["id", "x", "city", "when", "flag"]
    assert df["id"].dtype == np.int64
    assert df["x"].dtype == np.float64
    assert df["city"].isna().tolist() == [False, True, False]
    assert str(df["when"].dtype).startswith("datetime64")
    assert str(df["flag"].dtype) == "boolean"
    assert isinstance(df.index, pd.RangeIndex)


def test_missing_file_names_it_and_suggests_a_close_name(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", "a\n1\n")
    with pytest.raises(SourceError) as info:
        read_source(tmp_path / "trian.csv")
    message = str(info.value)
    assert "trian.csv" in message
    assert "not found" in message
    assert "'train.csv'" in message
    assert info.value.source.endswith("trian.csv")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"empty\.csv: is empty \(0 bytes\)"):
        read_source(write(tmp_path / "empty.csv", b""))


def test_header_only_file_is_an_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"header\.csv: has a header but no rows"):
        read_source(write(tmp_path / "header.csv", "a,b,c\n"))


def test_blank_file_has_no_header(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"blank\.csv: is empty \(no header line\)"):
        read_source(write(tmp_path / "blank.csv", "\n\n"))


def test_truncated_csv_names_the_line(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i * 2},{i * 3}\n" for i in range(10))
    path = write(tmp_path / "cut.csv", "a,b,c\n" + rows + "10,2")
    with pytest.raises(SourceError) as info:
        read_source(path)
    assert "cut.csv: line 12 has 2 fields but the header has 3" in str(info.value)
    assert info.value.context["line"] == 12


def test_ragged_row_in_the_middle_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "ragged.csv", "a,b\n1,2\n3,4,5\n6,7\n")
    with pytest.raises(SourceError, match=r"ragged\.csv: line 3 has 3 fields but the header has 2"):
        read_source(path)


def test_latin1_read_as_utf8_names_byte_offset_and_line(tmp_path: Path) -> None:
    text = "id,name\n1,Ana\n2,José\n"
    path = write(tmp_path / "people.csv", text.encode("latin-1"))
    with pytest.raises(SourceError) as info:
        read_source(path)
    message = str(info.value)
    offset = text.encode("latin-1").index(b"\xe9")
    assert f"byte 0xe9 at offset {offset} (line 3)" in message
    assert "people.csv" in message
    assert "column 'name'" in message
    assert "encoding:" in message
    ok = read_source(SourceSpec(path=str(path), encoding="latin-1"))
    assert ok["name"].tolist() == ["Ana", "José"]


def test_latin1_header(tmp_path: Path) -> None:
    path = write(tmp_path / "header.csv", "café,b\n1,2\n".encode("latin-1"))
    with pytest.raises(
        SourceError, match=r"header\.csv: is not valid utf-8: byte 0xe9 at offset 3 \(line 1\)"
    ):
        read_source(path)


def test_bad_bytes_in_a_gzipped_csv(tmp_path: Path) -> None:
    body = ("a,b\n" + "1,x\n" * 5000 + "2,caf\xe9\n").encode("latin-1")
    path = write(tmp_path / "big.csv.gz", gzip.compress(body))
    with pytest.raises(SourceError, match=r"offset \d+ \(line 5002\)"):
        read_source(path)


def test_unknown_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a\n1\n")
    with pytest.raises(SourceError, match="unknown encoding 'klingon'"):
        read_source(SourceSpec(path=str(path), encoding="klingon"))


def test_mixed_types_stay_readable_as_text(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.csv", "a,b\n1,x\n2,y\nabc,z\n4.5,w\n")
    df = read_source(path)
    assert df["a"].tolist() == ["1", "2", "abc", "4.5"]


def test_mixed_types_beyond_the_first_block_stay_readable(tmp_path: Path) -> None:
    # Arrow infers types on its first 1 MiB block; a late string must not crash.
    lines = "".join(f"{i},{i}.5\n" for i in range(200_000))
    df = read_source(write(tmp_path / "late.csv", "a,b\n" + lines + "oops,1\n"))
    assert df["a"].iloc[-1] == "oops"
    assert df["a"].iloc[0] == "0"
    assert len(df) == 200_001


def test_huge_numbers_nan_and_inf(tmp_path: Path) -> None:
    path = write(tmp_path / "big.csv", "x\n1e308\n-1e308\nnan\ninf\n-inf\n99999999999999999999\n")
    x = read_source(path)["x"].tolist()
    assert x[:2] == [1e308, -1e308]
    assert math.isnan(x[2])
    assert x[3:5] == [math.inf, -math.inf]
    assert x[5] == pytest.approx(1e20)


def test_all_null_column_reads_as_float(tmp_path: Path) -> None:
    df = read_source(write(tmp_path / "nulls.csv", "a,b\n1,\n2,\n"))
    assert df["b"].dtype == np.float64
    assert df["b"].isna().all()


def test_duplicate_column_names_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.csv", "a,b,a,c,b\n1,2,3,4,5\n")
    with pytest.raises(SchemaError) as info:
        read_source(path)
    message = str(info.value)
    assert "dup.csv" in message
    assert "'a' at positions 1, 3" in message
    assert "'b' at positions 2, 5" in message
    assert info.value.column == "a"


def test_duplicate_column_names_in_a_frame() -> None:
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(SchemaError, match="source 'train': duplicate column names: 'a'"):
        read_source(frame, name="train")


@pytest.mark.hostile
def test_corrupted_parquet(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pd.DataFrame({"a": range(1000), "b": ["x"] * 1000}).to_parquet(good)
    data = good.read_bytes()
    cut = write(tmp_path / "cut.parquet", data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cut\.parquet: is not a readable Parquet file"):
        read_source(cut)
    garbage = write(tmp_path / "garbage.pq", b"PAR1" + b"\x00" * 100)
    with pytest.raises(SourceError, match=r"garbage\.pq: is not a readable Parquet file"):
        read_source(garbage)


def test_parquet_roundtrip_and_named_index(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).set_index("a")
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    df = read_source(path)
    assert df.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    pd.DataFrame({"a": pd.Series([], dtype="int64")}).to_parquet(path)
    with pytest.raises(SourceError, match=r"none\.parquet: has columns but no rows"):
        read_source(path)


def test_unknown_suffix_and_format_override(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", "a;b\n1;2\n")
    with pytest.raises(SourceError, match=r"data\.txt: cannot tell the format from the suffix"):
        read_source(path)
    df = read_source(SourceSpec(path=str(path), format="csv", delimiter=";"))
    assert df.to_dict("list") == {"a": [1], "b": [2]}


def test_bad_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "a\n1\n")
    with pytest.raises(SourceError, match="single character"):
        read_source(SourceSpec(path=str(path), delimiter="||"))


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        read_source(tmp_path)


def test_spec_path_is_resolved_against_root_and_named(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", "a\n1\n")
    spec = SourceSpec(path="train.csv")
    assert read_source(spec, root=tmp_path)["a"].tolist() == [1]
    with pytest.raises(SourceError) as info:
        read_source(SourceSpec(path="nope.csv"), name="train", root=tmp_path)
    assert str(info.value).startswith("source 'train' (")
    assert "nope.csv" in str(info.value)


def test_frames_and_tables() -> None:
    frame = pd.DataFrame({0: [1, 2], "b": [3, 4]})
    assert list(read_source(frame).columns) == ["0", "b"]
    assert list(frame.columns) == [0, "b"]
    table = pa.table({"a": [1, None], "t": pa.array([True, None])})
    df = read_source(table)
    assert str(df["t"].dtype) == "boolean"
    with pytest.raises(SourceError, match="DataFrame: has no rows"):
        read_source(pd.DataFrame({"a": []}))


def test_wrong_source_type() -> None:
    with pytest.raises(InvalidParameterError) as info:
        read_source(42)
    assert str(info.value) == (
        "The 'source' parameter of read_source must be a SourceSpec, a str or Path, a pandas "
        "DataFrame or a pyarrow Table. Got 'int' instead."
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "x"), (2, "y")])
    conn.close()
    return f"sqlite:///{path}"


def test_sql_reads(sqlite_url: str) -> None:
    df = read_source(SourceSpec(sql="SELECT a, b FROM t ORDER BY a", url=sqlite_url))
    assert df.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


def test_sql_failing_query(sqlite_url: str) -> None:
    with pytest.raises(SourceError, match="the query failed: no such table: nope"):
        read_source(SourceSpec(sql="SELECT * FROM nope", url=sqlite_url), name="events")


def test_sql_without_rows_and_duplicate_columns(sqlite_url: str) -> None:
    with pytest.raises(SourceError, match="the query returned no rows"):
        read_source(SourceSpec(sql="SELECT * FROM t WHERE a > 5", url=sqlite_url))
    with pytest.raises(SchemaError, match="duplicate column names: 'a'"):
        read_source(SourceSpec(sql="SELECT a, a FROM t", url=sqlite_url))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://ann:s3cret@127.0.0.1:1/db", "the query failed"),
        ("nodialect://ann:s3cret@localhost/db", "cannot use the database URL"),
        ("not a url s3cret", "cannot use the database URL"),
    ],
)
def test_sql_errors_do_not_leak_the_password(url: str, expected: str) -> None:
    with pytest.raises(SourceError) as info:
        read_source(SourceSpec(sql="SELECT 1", url=url))
    message = str(info.value)
    assert expected in message
    assert "s3cret" not in message
    assert "s3cret" not in repr(info.value.context)
