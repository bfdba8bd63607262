"""Real tabular data (docs/reference.md#tabular-data): categorical columns, missing values, target scaling, class
weights, the test split and ROC AUC — by hand on small tables, then end to end through the CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml
from helpers import SigintAfter, array_bytes, run_cli, write_config
from hypothesis import given, settings
from hypothesis import strategies as st

from nnctl.config import load_config
from nnctl.errors import ConfigError, DataError
from nnctl.experiment import set_up, train
from nnctl.loading import load_data
from nnctl.metrics import roc_auc
from nnctl.run import load_run
from nnctl.seeds import streams
from nnctl.tabular import Categorical, TargetScale, category_keys, class_weights, fit_preprocessing
from nnctl.train import Trainer

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- encoders by hand


@pytest.mark.parametrize(
    ("missing", "fill"),
    [("mean", 4.25), ("median", 2.5), ("most_frequent", 2.0), ("constant", 7.0)],
)
def test_fills_and_one_hot_columns_worked_by_hand(missing: str, fill: float) -> None:
    # Training rows 0-4; row 5 is held out (its 100 and its 'c' must not count).
    frame = pd.DataFrame(
        {
            "n": [2.0, np.nan, 2.0, 3.0, 10.0, 100.0],
            "c": ["b", "a", None, "b", "NA", "c"],
        }
    )
    X = frame[["n"]].to_numpy()
    data = SimpleNamespace(missing=missing, fill_value=7.0 if missing == "constant" else None)
    pre = fit_preprocessing(X, frame, np.arange(5), ["n"], ["c"], data, "t.csv")
    assert pre.fills == [fill]
    assert pre.categorical == [Categorical("c", ["a", "b"], missing=True)]  # None and "NA" are missing
    assert pre.names == ["n", "c=a", "c=b", "c=(missing)"]
    encoded, warnings = pre.encode(X, frame, "t.csv")
    expected = [
        [2, 0, 1, 0],
        [fill, 1, 0, 0],
        [2, 0, 0, 1],
        [3, 0, 1, 0],
        [10, 0, 0, 1],
        [100, 0, 0, 0],  # 'c' was only in the held-out row: all zeros
    ]
    np.testing.assert_array_equal(encoded, expected)
    assert warnings == ["t.csv: column 'c': 'c' was not seen in training (1 row); encoded as all zeros"]


@settings(max_examples=60, deadline=None)
@given(
    train_values=st.lists(st.sampled_from(["a", "b", "c", "", "NA"]), min_size=1, max_size=12),
    new_values=st.lists(st.sampled_from(["a", "b", "c", "d", "", "null"]), min_size=1, max_size=12),
    allow=st.booleans(),
)
def test_each_row_has_one_category_or_none(train_values: list[str], new_values: list[str], allow: bool) -> None:
    """Whatever the values: the block is as wide as the categories (+ missing), a row has at most one 1, and
    exactly one unless its value was not seen in training."""
    train_keys, train_missing = category_keys(pd.Series(train_values), "c", "t")
    encoder = Categorical.fit(train_keys, train_missing, False, "c", allow)
    assert encoder.width == len(set(train_keys[~train_missing])) + (allow and bool(train_missing.any()))
    values = pd.Series(new_values)
    if not allow and category_keys(values, "c", "t")[1].any():
        with pytest.raises(DataError):
            encoder.indices(values, "t", str, allow)
        return
    index, warning = encoder.indices(values, "t", str, allow)
    one_hot = np.zeros((len(values), encoder.width))
    one_hot[np.flatnonzero(index >= 0), index[index >= 0]] = 1
    assert (one_hot.sum(axis=1) <= 1).all()
    assert (warning is None) == bool((index >= 0).all())


def test_most_frequent_breaks_ties_with_the_smallest_value() -> None:
    X = np.array([[3.0], [3.0], [2.0], [2.0], [np.nan]])
    data = SimpleNamespace(missing="most_frequent", fill_value=None)
    assert fit_preprocessing(X, pd.DataFrame(index=range(5)), None, ["n"], [], data, "t").fills == [2.0]


def test_unseen_values_are_named_once_per_column_and_encode_as_zeros() -> None:
    encoder = Categorical("colour", ["blue", "red"])
    values = pd.Series(["red", "pink", "teal", "pink", " red "])
    index, warning = encoder.indices(values, "new.csv", lambda i: f"row {i + 1}", allow_missing=False)
    np.testing.assert_array_equal(index, [1, -1, -1, -1, 1])  # surrounding spaces do not make a new category
    assert warning == (
        "new.csv: column 'colour': 'pink', 'teal' (2 values) were not seen in training (3 rows); encoded as all zeros"
    )
    with pytest.raises(DataError, match=r"new.csv: column 'colour', row 2: expected a category, got a missing value"):
        encoder.indices(pd.Series(["red", None]), "new.csv", lambda i: f"row {i + 1}", allow_missing=False)


def test_integer_coded_categories_stay_numbers() -> None:
    side = pd.DataFrame({"grade": [3, 1, 3, 2]})
    data = SimpleNamespace(missing="error", fill_value=None)
    pre = fit_preprocessing(np.empty((4, 0)), side, None, [], ["grade"], data, "t")
    assert pre.categorical[0].categories == [1, 2, 3]
    later = pd.DataFrame({"grade": [2.0, 3.0, 7.0]})  # read as floats elsewhere: 2.0 is category 2
    encoded, warnings = pre.encode(np.empty((3, 0)), later, "new.csv")
    np.testing.assert_array_equal(encoded, [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert warnings == ["new.csv: column 'grade': '7' was not seen in training (1 row); encoded as all zeros"]
    with pytest.raises(DataError, match="column 'grade', row 2 .*: a categorical column holds text or whole numbers"):
        pre.encode(np.empty((2, 0)), pd.DataFrame({"grade": [1.0, 2.5]}), "new.csv")


def test_class_weights_by_hand() -> None:
    np.testing.assert_allclose(class_weights("balanced", ["a", "b"], np.array([0, 0, 0, 1]), "t"), [4 / 6, 4 / 2])
    np.testing.assert_array_equal(class_weights({"b": 3.0}, ["a", "b"], np.array([0, 1]), "t"), [1.0, 3.0])
    np.testing.assert_array_equal(class_weights({1: 5.0}, [0, 1], np.array([0, 1]), "t"), [1.0, 5.0])
    with pytest.raises(ConfigError, match=r"data.class_weight: label 'c' is not one of the data's 2 classes: 'a', 'b'"):
        class_weights({"c": 2.0}, ["a", "b"], np.array([0, 1]), "t")


def test_target_scale_round_trip() -> None:
    Y = np.array([[10.0, -1.0], [20.0, -1.0], [30.0, -1.0]])
    scale = TargetScale.fit(Y, None)
    assert scale.mean == [20.0, -1.0] and scale.std == pytest.approx([math.sqrt(200 / 3), 1.0])  # σ of 0 → 1
    np.testing.assert_allclose(scale.scale(Y).mean(axis=0), [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(scale.unscale(scale.scale(Y)), Y, rtol=1e-15)
    assert scale.unscale(scale.scale(Y.astype(np.float32))).dtype == np.float32


def test_roc_auc_by_hand_with_ties() -> None:
    # Positives 0.5, 0.9, 0.2; negatives 0.5, 0.2. Pairs (pos, neg): (.5,.5) ½, (.5,.2) 1, (.9,.5) 1, (.9,.2) 1,
    # (.2,.5) 0, (.2,.2) ½ → 4 / 6.
    assert roc_auc(np.array([0, 1, 0, 1, 1]), np.array([0.5, 0.5, 0.2, 0.9, 0.2])) == pytest.approx(4 / 6)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([1, 1]), np.array([0.1, 0.4])) is None  # one class: undefined


# ----------------------------------------------------------------------------- data for the end-to-end tests


def write_table(path: Path, rows: int, seed: int, **extra: Any) -> Path:
    """Two numbers (one with gaps, spelled blank or NA), a text colour, an integer grade, a yes/no label."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    grade = rng.integers(1, 4, size=rows)
    score = size + (colour == "red") - 0.5 * grade + 0.3 * rng.normal(size=rows)
    width = rng.normal(size=rows).round(3).astype(object)
    width[rng.random(rows) < 0.15] = ""
    width[rng.random(rows) < 0.05] = "NA"
    frame = pd.DataFrame({"size": size, "width": width, "colour": colour, "grade": grade})
    frame["label"] = np.where(score > -0.5, "yes", "no")
    for column, values in extra.items():
        frame[column] = values
    frame.to_csv(path, index=False)
    return path


def tabular_config(tmp_path: Path, **data: Any) -> Path:
    config = {
        "seed": 0,
        "data": {
            "train": "train.csv",
            "target": "label",
            "categorical": ["colour", "grade"],
            "missing": "median",
        }
        | data,
        "layers": ["input", {"fully_connected": {"units": 8}}, "tanh", {"fully_connected": {"units": 2}}, "softmax"],
        "objective": "cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "training": {"epochs": 6, "batch_size": 16},
    }
    return write_config(tmp_path / "t.yaml", config)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    write_table(tmp_path / "train.csv", 120, seed=1)
    write_table(tmp_path / "valid.csv", 40, seed=2)
    write_table(tmp_path / "test.csv", 40, seed=3)
    return tmp_path


# ----------------------------------------------------------------------------- statistics from training rows only


def test_statistics_come_from_the_training_rows_of_a_split(table: Path) -> None:
    frame = pd.read_csv(table / "train.csv")
    frame.loc[7, "colour"] = "purple"  # one row: a category only when that row is a training row
    frame.to_csv(table / "train.csv", index=False)
    config = load_config(tabular_config(table, validation_split=0.25))
    encoding, train_set, validation = load_data(config, streams(0)["split"])
    assert validation is not None and train_set.rows is not None
    width = pd.to_numeric(frame["width"], errors="coerce").to_numpy()
    assert encoding.preprocessing is not None
    fills = dict(zip(encoding.preprocessing.numeric, encoding.preprocessing.fills, strict=True))
    assert fills["width"] == np.nanmedian(width[train_set.rows])
    assert fills["width"] != np.nanmedian(width)  # the whole file's median would differ
    colours = encoding.preprocessing.categorical[0].categories
    assert ("purple" in colours) == (7 in set(train_set.rows.tolist()))


def test_validation_and_test_files_never_feed_the_statistics(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("valid.csv", "test.csv"):
        frame = pd.read_csv(table / name)
        frame["width"], frame.loc[0, "colour"] = 1e6, "purple"
        frame.to_csv(table / name, index=False)
    path = tabular_config(table, validation="valid.csv", test="test.csv")
    code, _, err = run_cli(capsys, "train", path, "--out", table / "run", "--quiet")
    assert code == 0
    code, _, err = run_cli(capsys, "train", path, "--out", table / "run2")
    assert "valid.csv: column 'colour': 'purple' was not seen in training (1 row); encoded as all zeros" in err
    assert "test.csv: column 'colour': 'purple' was not seen in training" in err
    meta = json.loads((table / "run" / "model.json").read_text())
    pre = meta["preprocessing"]
    width = pd.to_numeric(pd.read_csv(table / "train.csv")["width"], errors="coerce")
    assert pre["fills"][pre["numeric"].index("width")] == float(np.nanmedian(width))
    assert pre["categorical"] == [
        {"column": "colour", "categories": ["blue", "green", "red"], "missing": False},
        {"column": "grade", "categories": [1, 2, 3], "missing": False},
    ]
    assert meta["n_features"] == 2 + 3 + 3


# ----------------------------------------------------------------------------- end to end


def test_eval_and_predict_apply_the_training_encoding(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tabular_config(table, test="test.csv")
    code, out, _ = run_cli(capsys, "train", path, "--out", table / "run")
    assert code == 0 and "test accuracy" in out
    scores = json.loads((table / "run" / "test_metrics.json").read_text())
    code, out, _ = run_cli(capsys, "eval", table / "run", table / "test.csv", "--json")
    evaluated = json.loads(out)
    assert scores["accuracy"] == evaluated["accuracy"] and scores["loss"] == pytest.approx(evaluated["loss"], rel=1e-12)
    assert 0 <= evaluated["roc_auc"] <= 1 and scores["roc_auc"] == pytest.approx(evaluated["roc_auc"], rel=1e-12)
    new = pd.read_csv(table / "test.csv").head(3)
    new.loc[0, "colour"], new.loc[1, "grade"] = "pink", 9
    new.to_csv(table / "new.csv", index=False)
    code, out, err = run_cli(capsys, "predict", table / "run", table / "new.csv")
    assert code == 0 and len(pd.read_csv(__import__("io").StringIO(out))) == 3
    assert "warning: " + str(table / "new.csv") + ": column 'colour': 'pink' was not seen in training" in err
    assert "column 'grade': '9' was not seen in training" in err
    run = load_run(table / "run")
    unseen = run.outputs(new.iloc[[0]], warn=lambda message: None)
    assert run.encoding.preprocessing is not None
    X, _ = run.encoding.preprocessing.encode_frame(new.iloc[[0]], "x", np.float64)
    assert not X[0, 2:5].any()  # colour's block: all zeros
    np.testing.assert_array_equal(unseen, run.network.forward(X))


def test_runs_lists_the_test_metric(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tabular_config(table, test="test.csv")
    assert run_cli(capsys, "train", path, "--out", table / "runs" / "a", "--quiet")[0] == 0
    code, out, _ = run_cli(capsys, "runs", table / "runs", "--json")
    (row,) = json.loads(out)
    assert row["test_accuracy"] == json.loads((table / "runs" / "a" / "test_metrics.json").read_text())["accuracy"]
    code, out, _ = run_cli(capsys, "runs", table / "runs")
    assert "test_accuracy" in out


def test_summary_lists_features_after_encoding(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "summary", tabular_config(table), "--json")
    summary = json.loads(out)
    assert summary["n_features"] == 8 and summary["classes"] == ["no", "yes"] and summary["targets"] == ["label"]
    assert [(f["name"], f["kind"], f["columns"]) for f in summary["features"]] == [
        ("size", "numeric", 1),
        ("width", "numeric", 1),
        ("colour", "categorical", 3),
        ("grade", "categorical", 3),
    ]
    code, out, _ = run_cli(capsys, "summary", tabular_config(table))
    assert "features → 8 input columns" in out and "one-hot: blue, green, red" in out and "3 classes" not in out


def test_identifier_like_columns_draw_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path / "train.csv", 60, seed=1, serial=np.arange(60) * 7 + 3, customer_id=np.arange(60) % 5)
    path = tabular_config(tmp_path)
    code, _, err = run_cli(capsys, "train", path, "--out", tmp_path / "run")
    assert code == 0
    assert "column 'serial' looks like an identifier (a different whole number in every row)" in err
    assert "column 'customer_id' looks like an identifier (its name says it is an identifier)" in err
    assert "to leave it out, list the columns to use in data.features" in err
    features = ["size", "width", "colour", "grade", "serial"]
    code, _, err = run_cli(capsys, "train", tabular_config(tmp_path, features=features), "--out", tmp_path / "run2")
    assert code == 0 and "identifier" not in err  # listed on purpose


def test_regression_with_scale_target_reports_original_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, seed in (("train.csv", 1), ("valid.csv", 2)):
        rng = np.random.default_rng(seed)
        a = rng.normal(size=80)
        pd.DataFrame({"a": a, "price": 50_000 + 8_000 * a + 500 * rng.normal(size=80)}).to_csv(tmp_path / name)
    config = {
        "data": {"train": "train.csv", "validation": "valid.csv", "target": "price", "features": ["a"]},
        "layers": ["input", {"fully_connected": {"units": 1}}, "linear"],
        "objective": "squared_error",
        "optimizer": {"name": "adam", "learning_rate": 0.1},
        "training": {"epochs": 60, "batch_size": 16},
    }
    config["data"]["scale_target"] = True
    path = write_config(tmp_path / "r.yaml", config)
    assert run_cli(capsys, "train", path, "--out", tmp_path / "run", "--quiet")[0] == 0
    run = load_run(tmp_path / "run")
    valid = pd.read_csv(tmp_path / "valid.csv")
    predicted = run.predict(valid)["predicted_price"].to_numpy()
    assert abs(predicted.mean() - 50_000) < 2_000  # original units, not standardised ones
    assert abs(run.network.forward(valid[["a"]].to_numpy()).mean()) < 1  # the network itself learned (y − μ) / σ
    scores = run.evaluate(valid)
    assert scores["loss"] == pytest.approx(np.mean((valid["price"].to_numpy() - predicted) ** 2), rel=1e-12)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["validation_loss"].iloc[-1] == pytest.approx(scores["loss"], rel=1e-9)  # the same units
    assert history["validation_rmse"].iloc[-1] == pytest.approx(scores["rmse"], rel=1e-9)
    assert scores["rmse"] < 1_000
    config["data"]["scale_target"] = False  # unscaled, the same network is far from it after as many epochs
    assert run_cli(capsys, "train", write_config(tmp_path / "u.yaml", config), "--out", tmp_path / "u", "-q")[0] == 0
    assert load_run(tmp_path / "u").evaluate(valid)["rmse"] > 10 * scores["rmse"]


def test_class_weights_change_the_loss_and_gradient_as_worked_by_hand(tmp_path: Path) -> None:
    pd.DataFrame({"x1": [1.0, 3.0, 0.0], "x2": [2.0, -1.0, 1.0], "y": ["a", "b", "a"]}).to_csv(
        tmp_path / "w.csv", index=False
    )
    config = {
        "epsilon": 1e-12,
        "data": {"train": "w.csv", "validation": "w.csv", "target": "y", "class_weight": {"a": 0.5, "b": 4.0}},
        "layers": [{"input": {"normalize": "none"}}, {"fully_connected": {"units": 2}}, "softmax"],
        "objective": "cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": 1.0},
        "training": {"epochs": 1, "batch_size": None, "shuffle": False},
    }
    setup = set_up(load_config(write_config(tmp_path / "w.yaml", config)))
    W, b = setup.network.modules[1].params["W"], setup.network.modules[1].params["b"]
    W[...], b[...] = 0.0, 0.0  # ŷ = (½, ½) for every row
    state = Trainer(setup.network, setup.optimizer, setup.config.training, setup.shuffle_rng).fit(
        setup.train, setup.validation
    )
    # Row weights 0.5, 4, 0.5; each row's loss ln 2; the batch loss (1/N) Σ w_i J_i.
    assert state.history[0]["train_loss"] == pytest.approx(5 / 3 * math.log(2), rel=1e-9)
    # δ_z = w_i (ŷ − y): [[-¼, ¼], [2, -2], [-¼, ¼]]; ∂W = Xᵀ δ / 3, ∂b = mean δ; sgd with η = 1: p ← −∂p.
    np.testing.assert_allclose(W, -np.array([[5.75, -5.75], [-2.75, 2.75]]) / 3, rtol=1e-9)
    np.testing.assert_allclose(b, -np.array([[0.5, -0.5]]), rtol=1e-9)
    X = np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    unweighted = setup.network.loss(Y, setup.network.forward(X))
    assert state.history[0]["validation_loss"] == pytest.approx(unweighted, rel=1e-12)  # validation: unweighted


def test_balanced_class_weights_are_saved(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tabular_config(table, class_weight="balanced")
    assert run_cli(capsys, "train", path, "--out", table / "run", "--quiet")[0] == 0
    meta = json.loads((table / "run" / "model.json").read_text())
    labels = pd.read_csv(table / "train.csv")["label"]
    counts = labels.value_counts()
    expected = {c: len(labels) / (2 * counts[c]) for c in ("no", "yes")}
    assert meta["class_weights"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- with everything else


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cached_and_uncached_runs_are_bit_identical(
    table: Path, dtype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tabular_config(table, validation_split=0.2)
    runs = []
    for i, cache in enumerate(["true", "true", "false"]):  # the second run reads the first one's cache entry
        out = table / f"run{i}"
        args = ("--set", f"data.cache={cache}", "--set", f"dtype={dtype}", "--out", out, "--quiet")
        assert run_cli(capsys, "train", path, *args)[0] == 0
        runs.append(array_bytes(out))
    assert runs[0] == runs[1] == runs[2]
    entries = [p for p in Path(os.environ["NNCTL_CACHE_DIR"]).iterdir() if len(p.name) == 64]
    assert len(entries) == 1  # the cached columns, raw: the encoding is fitted after reading them


def test_resume_is_exact_with_categories_fills_and_class_weights(table: Path) -> None:
    path = tabular_config(table, validation_split=0.2, class_weight="balanced", test="test.csv")
    whole = train(load_config(path), out=table / "whole")
    stopped = train(load_config(path), out=table / "part", callback=SigintAfter(9), handle_signals=True)
    assert stopped.status == "interrupted" and not (table / "part" / "test_metrics.json").exists()
    resumed = train(load_config(table / "part" / "config.yaml"), resume=table / "part")
    assert resumed.status == whole.status == "epochs"
    assert array_bytes(table / "whole") == array_bytes(table / "part")
    assert resumed.test == whole.test


def test_resume_is_exact_with_scale_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=90)
    kind = rng.choice(["x", "y", "z"], 90)
    pd.DataFrame({"a": a, "kind": kind, "price": 900 + 250 * a + 80 * (kind == "x")}).to_csv(tmp_path / "p.csv")
    config = {
        "data": {"train": "p.csv", "target": "price", "categorical": ["kind"], "scale_target": True},
        "layers": ["input", {"fully_connected": {"units": 4}}, "tanh", {"fully_connected": {"units": 1}}, "linear"],
        "objective": "squared_error",
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "training": {"epochs": 4, "batch_size": 16},
    }
    config["data"]["validation_split"] = 0.2
    path = write_config(tmp_path / "p.yaml", config)
    train(load_config(path), out=tmp_path / "whole")
    stopped = train(load_config(path), out=tmp_path / "part", callback=SigintAfter(7), handle_signals=True)
    assert stopped.status == "interrupted"
    train(load_config(tmp_path / "part" / "config.yaml"), resume=tmp_path / "part")
    assert array_bytes(tmp_path / "whole") == array_bytes(tmp_path / "part")
    whole, part = (pd.read_csv(tmp_path / r / "history.csv").drop(columns="seconds") for r in ("whole", "part"))
    pd.testing.assert_frame_equal(whole, part)


def test_a_model_saved_before_preprocessing_existed_still_loads(
    table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tabular_config(table, categorical=[], features=["size", "grade"], missing="error")
    assert run_cli(capsys, "train", path, "--out", table / "run", "--quiet")[0] == 0
    before = load_run(table / "run").evaluate(pd.read_csv(table / "test.csv"))
    meta = json.loads((table / "run" / "model.json").read_text())
    for key in ("preprocessing", "target_scale", "class_weights"):
        del meta[key]
    (table / "run" / "model.json").write_text(json.dumps(meta))
    assert load_run(table / "run").evaluate(pd.read_csv(table / "test.csv")) == before


def test_sweep_trials_fit_their_own_encoders_and_match_nnctl_train(
    table: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep reads the files once; each trial splits with its seed and fits on its own training rows, exactly as
    `nnctl train` with the same settings."""
    path = tabular_config(table, validation_split=0.25, test="test.csv", class_weight="balanced")
    config = yaml.safe_load(path.read_text()) | {"sweep": {"seeds": [0, 1], "parameters": {"training.epochs": [2]}}}
    write_config(path, config)
    monkeypatch.chdir(table)
    code, _, err = run_cli(capsys, "sweep", path, "--workers", "2", "--out", "sweep", "-q")
    assert code == 0, err
    fills = []
    for trial, seed in (("0001", 0), ("0002", 1)):
        args = ("--set", "training.epochs=2", "--set", f"seed={seed}", "--threads", "1", "--out", f"alone{seed}", "-q")
        assert run_cli(capsys, "train", path, *args)[0] == 0
        assert array_bytes(table / "sweep" / "trials" / trial) == array_bytes(table / f"alone{seed}")
        assert (table / "sweep" / "trials" / trial / "test_metrics.json").is_file()
        fills.append(json.loads((table / f"alone{seed}" / "model.json").read_text())["preprocessing"]["fills"])
    assert fills[0] != fills[1]  # two seeds, two splits, two sets of training rows


def test_gradcheck_checks_the_encoded_inputs(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "gradcheck", tabular_config(table, class_weight="balanced"), "--json")
    checks = json.loads(out)
    assert code == 0 and checks["passed"]
    assert [c["shape"] for c in checks["checks"] if c["parameter"] == "W"][0] == [8, 8]  # 2 numbers + 3 + 3 one-hot


def test_onnx_export_takes_one_input_per_categorical_column(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tabular_config(table)
    assert run_cli(capsys, "train", path, "--out", table / "run", "--quiet")[0] == 0
    code, out, _ = run_cli(capsys, "export", table / "run", "-o", table / "m.onnx")
    assert code == 0 and "colour string[N, 1], grade int64[N, 1]" in out
    frame = pd.read_csv(table / "test.csv", keep_default_na=False, dtype={"colour": str})
    frame.loc[0, "colour"], frame.loc[1, "grade"], frame.loc[2, "width"] = "pink", 9, ""  # unseen, unseen, missing
    frame.to_csv(table / "new.csv", index=False)
    session = ort.InferenceSession(str(table / "m.onnx"), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["inputs"]) == ["features", "colour", "grade"]
    assert json.loads(metadata["features"]) == ["size", "width"]
    assert json.loads(metadata["categories"]) == {"colour": ["blue", "green", "red"], "grade": [1, 2, 3]}
    feeds = {
        "features": frame[["size", "width"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32),
        "colour": frame[["colour"]].to_numpy(object),
        "grade": frame[["grade"]].to_numpy(np.int64),
    }
    probabilities, labels = session.run(["probabilities", "label"], feeds)
    predicted = load_run(table / "run").predict(pd.read_csv(table / "new.csv"), warn=lambda message: None)
    np.testing.assert_array_equal(labels, predicted["prediction"].to_numpy())
    np.testing.assert_allclose(probabilities, predicted[["prob_no", "prob_yes"]].to_numpy(), atol=1e-5)


def test_onnx_export_undoes_target_scaling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    frame = pd.DataFrame({"a": a, "kind": rng.choice(["x", "y"], 60), "price": 1_000 + 300 * a})
    frame.to_csv(tmp_path / "train.csv", index=False)
    config = {
        "data": {"train": "train.csv", "target": "price", "categorical": ["kind"], "scale_target": True},
        "layers": ["input", {"fully_connected": {"units": 1}}, "linear"],
        "objective": "huber",
        "training": {"epochs": 3},
    }
    path = write_config(tmp_path / "r.yaml", config)
    assert run_cli(capsys, "train", path, "--out", tmp_path / "run", "--quiet")[0] == 0
    assert run_cli(capsys, "export", tmp_path / "run", "-o", tmp_path / "m.onnx")[0] == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (onnx_values,) = session.run(
        None, {"features": frame[["a"]].to_numpy(np.float32), "kind": frame[["kind"]].to_numpy(object)}
    )
    expected = load_run(tmp_path / "run").predict(frame)[["predicted_price"]].to_numpy()
    np.testing.assert_allclose(onnx_values, expected, rtol=1e-5)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"categorical": ["colour", "colour"]}, "data.categorical: lists a column twice"),
        ({"categorical": ["label"]}, "data.categorical: column(s) ['label'] are targets"),
        ({"features": ["size"], "categorical": ["colour"]}, "data.categorical: column(s) ['colour'] are not in data"),
        ({"missing": "constant"}, "data.fill_value: missing: constant needs a fill_value"),
        ({"missing": "median", "fill_value": 0}, "data.fill_value: only used with missing: constant"),
        ({"missing": "mode"}, "data.missing: expected one of 'error', 'mean', 'median', 'most_frequent' or"),
        ({"class_weight": "balance"}, "data.class_weight: expected one of 'balanced' or a mapping, got 'balance'"),
        ({"class_weight": {"yes": -1}}, "data.class_weight: expected a weight ≥ 0 for each label"),
        ({"class_weight": {True: 2}}, "data.class_weight: label True is a YAML boolean; quote labels"),
        ({"scale_target": True}, "data.scale_target: standardises regression targets; cross_entropy scores classes"),
    ],
)
def test_bad_settings_are_config_errors(
    table: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], message: str
) -> None:
    code, _, err = run_cli(capsys, "summary", tabular_config(table, **data))
    assert code == 2 and message in err, err


@pytest.mark.parametrize(
    ("data", "change", "message"),
    [
        (
            {"categorical": ["grade"]},
            {},
            "column 'colour', row 1 (line 2): expected a number, got 'green'; if the column holds categories, "
            "declare it in data.categorical",
        ),
        ({"missing": "error"}, {}, "column 'width', row "),
        (
            {"missing": "error", "features": ["size", "colour", "grade"]},
            {"colour": ""},
            "column 'colour', row 1 (line 2): expected a category, got a missing value; set data.missing",
        ),
        ({"class_weight": {"maybe": 2}}, {}, "data.class_weight: label 'maybe' is not one of the data's 2 classes"),
        ({"categorical": ["colour", "size"]}, {}, "column 'size', row 1 (line 2): a categorical column holds text or"),
        ({}, {"width": ""}, "column 'width' has no values in the training rows to take its median from"),
        ({"test": "nope.csv"}, {}, "data.test: file not found"),
    ],
)
def test_bad_data_for_a_setting_names_the_column(
    table: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    frame = pd.read_csv(table / "train.csv", keep_default_na=False)
    for column, value in change.items():
        frame[column] = value
    frame.to_csv(table / "train.csv", index=False)
    code, _, err = run_cli(capsys, "train", tabular_config(table, **data), "--out", table / "run")
    assert code == 2 and message in err, err
    assert not (table / "run").exists()  # found before training, nothing written


def test_missing_numbers_without_data_missing_say_how_to_fill_them(
    table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "summary", tabular_config(table, missing="error"))
    assert code == 2 and "expected a number, got a missing value" in err and "set data.missing (mean, median" in err


def test_a_text_target_for_regression_names_the_classification_objectives(
    table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "data": {"train": "train.csv", "target": "colour", "features": ["size"]},
        "layers": ["input", {"fully_connected": {"units": 1}}, "linear"],
        "objective": "squared_error",
    }
    code, _, err = run_cli(capsys, "summary", write_config(table / "r.yaml", config))
    assert code == 2 and "column 'colour', row 1 (line 2): expected a number, got" in err
    assert "use cross_entropy (classes) or log_loss (two classes)" in err
