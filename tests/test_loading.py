"""Data files at scale: .csv, .csv.gz and .parquet give the same arrays and the same trained weights; chunked
parsing names the right row in the last chunk; the split is a view; the input statistics are fitted in blocks."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import model_arrays, run_cli, toy_config, write_config, write_csv

from nnctl import formats
from nnctl.config import validate_config
from nnctl.data import Dataset, Encoding, feature_matrix, infer_encoding, read_csv, split
from nnctl.errors import DataError
from nnctl.experiment import build_for_data, train
from nnctl.layers import Input
from nnctl.loading import load_file, read_table
from nnctl.optimizers import OPTIMIZERS
from nnctl.seeds import streams
from nnctl.train import Trainer

FORMATS = ["csv", "csv.gz", "parquet"]


def frame(rows: int = 57, seed: int = 0) -> pd.DataFrame:
    """Floats at full precision, integers, and a text label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.standard_normal(rows) * 10.0 ** rng.integers(-5, 5, rows),
            "b": rng.integers(-1000, 1000, rows),
            "c": rng.standard_normal(rows),
            "label": rng.choice(["no", "yes", "maybe"], rows),
        }
    )


def save(data: pd.DataFrame, path: Path, row_group: int = 20) -> Path:
    """`data` as `path` says (.parquet in row groups of `row_group` rows; pyarrow keeps float64 exactly, and
    pandas writes floats in CSV with repr, which it reads back exactly)."""
    if formats.file_format(path) == "parquet":
        data.to_parquet(path, row_group_size=row_group, index=False)
    else:
        data.to_csv(path, index=False)  # compression inferred from .gz
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_format_gives_the_same_arrays(tmp_path: Path, dtype: type) -> None:
    data = frame()
    whole = read_csv(save(data, tmp_path / "plain.csv"))
    expected = feature_matrix(whole, ["a", "b", "c"], "plain.csv", dtype)
    for fmt in FORMATS:
        loaded = load_file(save(data, tmp_path / f"d.{fmt}"), ["label"], None, dtype, chunk_rows=16)
        assert loaded.features == ["a", "b", "c"]
        assert loaded.X.dtype == dtype and loaded.X.flags.c_contiguous
        np.testing.assert_array_equal(loaded.X, expected)
        np.testing.assert_array_equal(loaded.X, data[["a", "b", "c"]].to_numpy(dtype=dtype))
        assert loaded.targets["label"].tolist() == data["label"].tolist()
        assert read_table(tmp_path / f"d.{fmt}").equals(whole)


def test_every_format_trains_to_the_same_weights(tmp_path: Path) -> None:
    data = frame(120)
    weights = []
    for fmt in FORMATS:
        save(data, tmp_path / f"train.{fmt}", row_group=25)
        layers = [{"input": {"normalize": "zscore"}}, {"fully_connected": {"units": 5}}, "tanh"]
        layers += [{"fully_connected": {"units": 3}}, "softmax"]
        config = toy_config(
            dtype="float32",
            data={"train": str(tmp_path / f"train.{fmt}"), "target": "label", "validation_split": 0.25},
            layers=layers,
        )
        weights.append(model_arrays(train(validate_config(config), out=tmp_path / fmt).path))
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        for key in weights[0]:
            np.testing.assert_array_equal(other[key], weights[0][key], err_msg=key)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("abc", "expected a number, got 'abc'"),
        ("", "expected a number, got a missing value"),
        ("1e39", "expected a number within float32 range"),
        ("inf", "expected a finite number, got inf"),
    ],
    ids=["text", "blank", "overflow", "inf"],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bad_value_in_the_last_chunk_names_its_row(tmp_path: Path, fmt: str, bad: str, words: str) -> None:
    data = frame(25).astype({"c": object})
    data.loc[22, "c"] = bad  # row 23 of 25: in the third chunk of 10 rows, the third row group of 10
    if fmt == "parquet":  # typed columns: a number where it is one, a null for the blank, else text
        data["c"] = pd.to_numeric(data["c"], errors="coerce") if bad != "abc" else data["c"].astype(str)
    path = save(data, tmp_path / f"d.{fmt}", row_group=10)
    where = "row 23 (row group 2)" if fmt == "parquet" else "row 23 (line 24)"
    with pytest.raises(DataError) as caught:
        load_file(path, ["label"], None, np.float32, chunk_rows=10)
    assert f"{path}: column 'c', {where}: {words}" in str(caught.value)


def test_a_ragged_row_in_the_last_chunk_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,y\n" + "1,2,x\n" * 20 + "1,2,x,9\n")
    with pytest.raises(DataError, match=r"line 22: expected 3 fields like the header, got 4"):
        load_file(path, ["y"], None, np.float64, chunk_rows=5)


def test_parquet_target_errors_name_the_row_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = frame(30)
    data.loc[17, "label"] = None
    save(data, tmp_path / "train.parquet", row_group=10)
    config = toy_config(data={"train": "train.parquet", "target": "label"})
    code, _, err = run_cli(capsys, "train", write_config(tmp_path / "c.yaml", config), "--out", tmp_path / "run")
    assert code == 2
    assert f"{tmp_path / 'train.parquet'}: column 'label', row 18 (row group 1): missing class label" in err


def test_parquet_categorical_errors_name_the_row_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = frame(30).assign(b=np.arange(30) % 3 + 0.0)
    data.loc[17, "b"] = 1.5  # fitting the categories finds it first: it too names the row group
    save(data, tmp_path / "train.parquet", row_group=10)
    config = toy_config(data={"train": "train.parquet", "target": "label", "categorical": ["b"]})
    code, _, err = run_cli(capsys, "train", write_config(tmp_path / "c.yaml", config), "--out", tmp_path / "run")
    assert code == 2
    assert f"{tmp_path / 'train.parquet'}: column 'b', row 18 (row group 1): a categorical column holds" in err


def test_labels_that_chunks_parse_differently_are_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)) + "20,x\n")
    loaded = load_file(path, ["y"], None, np.float64, chunk_rows=5)  # ints in 4 chunks, then "x"
    whole = read_csv(path)
    assert loaded.targets["y"].tolist() == whole["y"].astype(str).tolist() == ["0", "1"] * 10 + ["x"]
    encoding = infer_encoding(loaded.targets, "d.csv", ["y"], ["a"], "cross_entropy")
    assert encoding.classes == infer_encoding(whole, "d.csv", ["y"], None, "cross_entropy").classes == ["0", "1", "x"]


def test_lines_ended_by_a_lone_carriage_return(tmp_path: Path) -> None:
    """The row estimate (newlines) is short here: the matrix grows and still holds every row."""
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b,y\r" + b"".join(b"%d,%d,x\r" % (i, 2 * i) for i in range(40)))
    loaded = load_file(path, ["y"], None, np.float64, chunk_rows=7)
    np.testing.assert_array_equal(loaded.X, np.column_stack([np.arange(40), 2 * np.arange(40)]))


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("d.parquet", b"PAR1 not really", "is not a readable Parquet file"),
        (
            "d.csv.gz",
            gzip.compress(b"a,y\n" + b"".join(b"%d,x\n" % i for i in range(5000)))[:2000],
            "is not a complete",
        ),
        ("d.csv.gz", b"plain text, not gzip", "is not a complete gzip file"),
    ],
    ids=["parquet-garbage", "gzip-truncated", "gzip-not-gzip"],
)
def test_damaged_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes, words: str):
    (tmp_path / name).write_bytes(content)
    config = write_config(tmp_path / "c.yaml", toy_config(data={"train": name, "target": "y"}))
    code, _, err = run_cli(capsys, "train", config, "--out", tmp_path / "run")
    assert code == 2, err
    assert err.startswith(f"error: {config}: data.train: {tmp_path / name} {words}"), err


def test_a_parquet_footer_is_read_once_per_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    path, real, opened = save(frame(60), tmp_path / "d.parquet", row_group=25), pq.ParquetFile, []

    def opening(source: Any, **kwargs: Any) -> Any:
        opened.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", opening)

    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # into memory; into a new entry; from the entry
        opened.clear()
        loaded = load_file(path, ["label"], None, np.float64, cache=cache)
        np.testing.assert_array_equal(loaded.X, frame(60)[["a", "b", "c"]].to_numpy())
        assert loaded.at(59) == "row 60 (row group 2)" and opened == [path]


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    save(frame(), tmp_path / "train.parquet")
    config = write_config(tmp_path / "c.yaml", toy_config(data={"train": "train.parquet", "target": "label"}))
    script = "import sys; sys.modules['pyarrow'] = None; from nnctl.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", script, "train", str(config), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == 'error: reading Parquet files needs pyarrow: pip install "nnctl[parquet]"\n'


@pytest.mark.parametrize("fmt", FORMATS)
def test_eval_and_predict_read_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    write_csv(tmp_path / "train.csv", 60, seed=1)
    data = pd.read_csv(write_csv(tmp_path / "valid.csv", 20, seed=2))
    config = write_config(tmp_path / "c.yaml", toy_config())
    assert run_cli(capsys, "train", config, "--out", tmp_path / "run", "-q")[0] == 0
    save(data, tmp_path / f"test.{fmt}")
    code, out, err = run_cli(capsys, "eval", tmp_path / "run", tmp_path / f"test.{fmt}", "--json")
    assert code == 0, err
    code, predicted, err = run_cli(capsys, "predict", tmp_path / "run", tmp_path / f"test.{fmt}")
    assert code == 0, err
    assert run_cli(capsys, "eval", tmp_path / "run", tmp_path / "valid.csv", "--json")[1] == out
    assert run_cli(capsys, "predict", tmp_path / "run", tmp_path / "valid.csv")[1] == predicted


def test_split_is_a_view_and_trains_like_a_copy(tmp_path: Path) -> None:
    """The split's sets index the stored matrix (no copy); training on them equals training on copies."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 4))
    Y = np.eye(2)[(X[:, 0] > 0).astype(int)]
    train_set, held = split(Dataset(X, Y, "mem"), 0.2, np.random.default_rng(0))
    assert train_set.matrix is X and held.matrix is X and len(train_set) + len(held) == 300
    copy = Dataset(train_set.X, train_set.Y, "copy")
    assert not np.shares_memory(copy.matrix, X)

    def weights(data: Dataset) -> list[np.ndarray]:
        config = validate_config(toy_config(data={"train": "x.csv", "target": "label"}))
        encoding = Encoding(["a", "b", "c", "d"], ["label"], "cross_entropy", ["no", "yes"])
        network = build_for_data(config, encoding, streams(0)["init"])
        network.input.fit(data.matrix, data.rows)
        optimizer = OPTIMIZERS[config.optimizer.name].build(config.optimizer)
        Trainer(network, optimizer, config.training, streams(0)["shuffle"]).fit(data)
        return [p.copy() for _, p, _ in network.parameters()]

    for a, b in zip(weights(train_set), weights(copy), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_statistics_in_blocks(dtype: type) -> None:
    rng = np.random.default_rng(5)
    X = (rng.normal(3.0, 2.0, size=(150_000, 3)) * [1, 1e-3, 1e3]).astype(dtype)
    X[:, 2] = 7.0  # a constant column: σ = 1
    rows = np.sort(rng.choice(len(X), 100_000, replace=False))
    whole, view = Input(3, dtype=dtype), Input(3, dtype=dtype)
    whole.fit(X[rows])
    view.fit(X, rows)
    np.testing.assert_array_equal(whole.state["mean"], view.state["mean"])
    np.testing.assert_array_equal(whole.state["std"], view.state["std"])
    x64 = X[rows].astype(np.float64)
    np.testing.assert_allclose(view.state["mean"][0], x64.mean(axis=0), rtol=1e-12 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(
        view.state["std"][0, :2], x64.std(axis=0)[:2], rtol=1e-12 if dtype == np.float64 else 1e-6
    )
    assert view.state["std"][0, 2] == 1.0


def test_a_pipe_with_a_repeated_column_name_is_an_error_not_a_hang(tmp_path: Path) -> None:
    import os
    import threading

    from nnctl.errors import DataError
    from nnctl.loading import read_table

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)

    def write() -> None:
        fifo.write_text("x,x,y\n1,2,3\n")

    writer = threading.Thread(target=write)
    writer.start()
    with pytest.raises(DataError, match="repeated column name: 'x'"):
        read_table(fifo, "DATA")
    writer.join(timeout=10)
