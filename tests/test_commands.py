"""`nnctl eval`, `predict`, `summary`, `plot` (and train's sparkline) through `nnctl.cli.main`."""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

import nnctl
from nnctl.cells import MAX_CLASSES_SHOWN
from nnctl.config import load_config
from nnctl.errors import DataError
from nnctl.experiment import set_up, train
from nnctl.plot import SPARKS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPS = 1e-7  # the configs' (default) epsilon


# ----------------------------------------------------------------------------- fixtures: three tiny runs


def _classes(n: int, rng: np.random.Generator) -> pd.DataFrame:
    labels = np.array(["cat", "dog", "fox"])[np.arange(n) % 3]
    centres = {"cat": (0, 0, 0, 0), "dog": (3, 0, 1, 0), "fox": (0, 3, 0, 1)}
    X = np.array([centres[c] for c in labels]) + rng.normal(0, 0.7, size=(n, 4))
    return pd.DataFrame({"f1": X[:, 0], "f2": X[:, 1], "f3": X[:, 2], "f4": X[:, 3], "label": labels})


def _binary(n: int, rng: np.random.Generator) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    labels = np.where(X[:, 0] - X[:, 1] + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    return pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "answer": labels})


def _regression(n: int, rng: np.random.Generator) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    return pd.DataFrame(
        {"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "y1": X[:, 0] + 2 * X[:, 1] + 5, "y2": X[:, 2] - X[:, 0] + 4}
    )


CONFIGS = {
    "multi": """
seed: 1
data: {train: multi_train.csv, target: label}
layers:
  - input: {normalize: zscore}
  - fully_connected: {units: 8}
  - tanh
  - fully_connected: {units: 3}
  - softmax
objective: cross_entropy
optimizer: {name: adam, learning_rate: 0.05}
training: {epochs: 25, batch_size: 16}
""",
    "binary": """
seed: 2
data: {train: binary_train.csv, validation: binary_test.csv, target: answer}
layers:
  - input
  - fully_connected: {units: 4}
  - relu
  - fully_connected: {units: 1}
  - logistic
objective: log_loss
optimizer: {name: adam, learning_rate: 0.05}
training: {epochs: 25, batch_size: 16}
""",
    "regression": """
seed: 3
data: {train: regression_train.csv, target: [y1, y2]}
layers:
  - input
  - fully_connected: {units: 6}
  - tanh
  - fully_connected: {units: 2}
  - linear
objective: squared_error
optimizer: {name: adam, learning_rate: 0.05}
training: {epochs: 25, batch_size: 16}
""",
    "huber": """
seed: 4
data: {train: huber_train.csv, validation_split: 0.25, target: [y1, y2]}
layers:
  - input
  - fully_connected: {units: 16}
  - leaky_relu: {alpha: 0.05}
  - dropout: {rate: 0.3}
  - fully_connected: {units: 2}
objective: {huber: {delta: 0.5}}
optimizer: {name: adam, learning_rate: 0.05, schedule: {name: cosine, t_max: 25}, clip_norm: 5}
training: {epochs: 25, batch_size: 16}
""",
    "mae": """
seed: 5
data: {train: mae_train.csv, target: [y1, y2]}
layers:
  - input
  - fully_connected: {units: 8}
  - softplus
  - fully_connected: {units: 2}
objective: absolute_error
optimizer: {name: momentum, learning_rate: 0.02, schedule: plateau}
training: {epochs: 25, batch_size: 16}
""",
}


@dataclass
class Case:
    config: Path
    run: Path
    test_csv: Path
    frame: pd.DataFrame  # the held-out rows


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("commands")
    rng = np.random.default_rng(0)
    make = {"multi": _classes, "binary": _binary, "regression": _regression, "huber": _regression, "mae": _regression}
    out: dict[str, Case] = {}
    for name, generate in make.items():
        generate(60, rng).to_csv(root / f"{name}_train.csv", index=False)
        test = generate(21, rng)
        if name in ("regression", "huber", "mae"):
            test.loc[4, "y2"] = 1.0  # no zero target in this file: MAPE is a number
        test.to_csv(root / f"{name}_test.csv", index=False)
        config = root / f"{name}.yaml"
        config.write_text(CONFIGS[name])
        run = root / "runs" / name
        train(nnctl.load_config(config), out=run)
        out[name] = Case(config, run, root / f"{name}_test.csv", test)
    return out


def eval_json(capsys: pytest.CaptureFixture[str], run: Path, csv: Path) -> dict:
    code, out, err = run_cli(capsys, "eval", run, csv, "--json")
    assert code == 0, err
    return json.loads(out)  # the whole of stdout is one JSON object


def flat(text: str) -> str:
    """Rich wraps long lines at spaces; compare with every run of whitespace as one space."""
    return " ".join(text.split())


# ----------------------------------------------------------------------------- eval --json


def test_eval_help_names_the_class_count_of_the_per_class_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", "--help")
    assert code == 0 and f"even for more than {MAX_CLASSES_SHOWN} classes" in " ".join(out.split())


def test_eval_json_classification_keys_and_types(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "eval", cases["multi"].run, cases["multi"].test_csv, "--json")
    assert code == 0, err
    assert out.endswith("}\n") and out.lstrip().startswith("{")
    result = json.loads(out)
    assert {"loss", "n_samples", "accuracy", "macro_f1", "classes", "confusion_matrix"} <= set(result)
    assert isinstance(result["loss"], float) and result["loss"] > 0
    assert result["n_samples"] == 21 and type(result["n_samples"]) is int
    assert isinstance(result["accuracy"], float) and 0 <= result["accuracy"] <= 1
    assert isinstance(result["macro_f1"], float) and 0 <= result["macro_f1"] <= 1
    assert result["classes"] == ["cat", "dog", "fox"]
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.dtype.kind == "i"
    assert matrix.sum() == 21
    assert matrix.sum(axis=1).tolist() == [7, 7, 7]  # rows = true class: 7 of each in the file
    assert np.trace(matrix) / 21 == pytest.approx(result["accuracy"])
    assert result["accuracy"] > 0.8  # the tiny model did learn
    assert set(result["per_class"]) == {"cat", "dog", "fox"}
    assert set(result["per_class"]["cat"]) == {"precision", "recall", "f1", "support"}


def test_eval_json_binary_with_string_labels(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    result = eval_json(capsys, cases["binary"].run, cases["binary"].test_csv)
    assert result["classes"] == ["no", "yes"]
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == 21
    truth = cases["binary"].frame["answer"]
    assert matrix.sum(axis=1).tolist() == [int((truth == "no").sum()), int((truth == "yes").sum())]


def test_eval_json_regression_keys(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    result = eval_json(capsys, cases["regression"].run, cases["regression"].test_csv)
    assert {"loss", "n_samples", "mse", "rmse", "mae", "r2", "mape"} <= set(result)
    for key in ("loss", "mse", "rmse", "mae", "r2", "mape"):
        assert isinstance(result[key], float), key
    assert "accuracy" not in result and "classes" not in result
    assert set(result["per_target"]) == {"y1", "y2"}
    per = result["per_target"]
    assert result["mse"] == pytest.approx((per["y1"]["mse"] + per["y2"]["mse"]) / 2)
    assert result["r2"] == pytest.approx((per["y1"]["r2"] + per["y2"]["r2"]) / 2)
    # squared_error's loss sums over the two targets; mse averages over them
    assert result["loss"] == pytest.approx(2 * result["mse"])


def test_eval_json_mape_is_null_when_a_target_is_zero(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frame = cases["regression"].frame.copy()
    frame.loc[3, "y2"] = 0.0
    frame.to_csv(tmp_path / "zero.csv", index=False)
    code, out, _ = run_cli(capsys, "eval", cases["regression"].run, tmp_path / "zero.csv", "--json")
    assert code == 0
    assert '"mape": null' in out
    result = json.loads(out)
    assert result["mape"] is None
    assert result["per_target"]["y2"]["mape"] is None
    assert isinstance(result["per_target"]["y1"]["mape"], float)


def test_eval_ignores_column_order_and_extra_columns(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for case in cases.values():
        frame = case.frame.copy()
        frame["notes"] = "extra"
        frame["unused_number"] = np.arange(len(frame))
        shuffled = frame[list(reversed(frame.columns))]
        shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
        assert eval_json(capsys, case.run, tmp_path / "shuffled.csv") == eval_json(capsys, case.run, case.test_csv)


# ----------------------------------------------------------------------------- eval: loss by hand from predict


def predictions(capsys: pytest.CaptureFixture[str], case: Case, csv: Path | None = None) -> pd.DataFrame:
    code, out, err = run_cli(capsys, "predict", case.run, csv or case.test_csv)
    assert code == 0, err
    return pd.read_csv(io.StringIO(out))


def test_eval_loss_is_cross_entropy_of_predicted_probabilities(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str]
) -> None:
    case = cases["multi"]
    pred = predictions(capsys, case)
    p_true = np.array([pred.loc[i, f"prob_{label}"] for i, label in enumerate(case.frame["label"])])
    by_hand = float(np.mean(-np.log(p_true + EPS)))
    assert eval_json(capsys, case.run, case.test_csv)["loss"] == pytest.approx(by_hand, rel=1e-12)


def test_eval_loss_is_log_loss_of_predicted_probabilities(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str]
) -> None:
    case = cases["binary"]
    pred = predictions(capsys, case)
    y = (case.frame["answer"] == "yes").to_numpy(float)  # "yes" is second in sorted order: class 1
    p = pred["prob_yes"].to_numpy()
    by_hand = float(np.mean(-(y * np.log(p + EPS) + (1 - y) * np.log(1 - p + EPS))))
    assert eval_json(capsys, case.run, case.test_csv)["loss"] == pytest.approx(by_hand, rel=1e-12)


def test_eval_loss_is_squared_error_of_predictions(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    case = cases["regression"]
    pred = predictions(capsys, case)
    Y = case.frame[["y1", "y2"]].to_numpy()
    Yhat = pred[["predicted_y1", "predicted_y2"]].to_numpy()
    by_hand = float(np.mean(((Y - Yhat) ** 2).sum(axis=1)))
    result = eval_json(capsys, case.run, case.test_csv)
    assert result["loss"] == pytest.approx(by_hand, rel=1e-12)
    assert result["mae"] == pytest.approx(float(np.abs(Y - Yhat).mean()), rel=1e-12)


def regression_outputs(capsys: pytest.CaptureFixture[str], case: Case) -> tuple[np.ndarray, np.ndarray]:
    pred = predictions(capsys, case)
    return case.frame[["y1", "y2"]].to_numpy(), pred[["predicted_y1", "predicted_y2"]].to_numpy()


def test_eval_loss_is_the_models_own_huber_loss(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    case = cases["huber"]
    Y, Yhat = regression_outputs(capsys, case)
    r = np.abs(Y - Yhat)
    by_hand = float(np.mean(np.where(r <= 0.5, 0.5 * r**2, 0.5 * (r - 0.25)).sum(axis=1)))  # δ = 0.5
    result = eval_json(capsys, case.run, case.test_csv)
    assert result["loss"] == pytest.approx(by_hand, rel=1e-12)
    assert result["mse"] == pytest.approx(float(((Y - Yhat) ** 2).mean()), rel=1e-12)  # the regression report too
    assert json.loads((case.run / "model.json").read_text())["objective"] == {"huber": {"delta": 0.5}}


def test_eval_loss_is_the_models_own_absolute_error(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    case = cases["mae"]
    Y, Yhat = regression_outputs(capsys, case)
    result = eval_json(capsys, case.run, case.test_csv)
    assert result["loss"] == pytest.approx(float(np.abs(Y - Yhat).sum(axis=1).mean()), rel=1e-12)
    assert result["loss"] == pytest.approx(2 * result["mae"], rel=1e-12)  # Σ over 2 targets vs their mean
    assert json.loads((case.run / "model.json").read_text())["objective"] == "absolute_error"


def test_predict_and_eval_see_dropout_as_the_identity(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str]
) -> None:
    case = cases["huber"]
    run = nnctl.load_run(case.run)
    X = case.frame[["x1", "x2", "x3"]].to_numpy()
    h = X
    for module in run.network.modules:
        if module.name != "dropout":
            h = module.forward(h)
    _, Yhat = regression_outputs(capsys, case)
    np.testing.assert_array_equal(Yhat, h)  # the same numbers as the stack without its dropout layer
    np.testing.assert_array_equal(regression_outputs(capsys, case)[1], Yhat)


def test_history_of_a_scheduled_clipped_run(cases: dict[str, Case]) -> None:
    history = pd.read_csv(cases["huber"].run / "history.csv")
    expected = [0.025 * (1 + np.cos(np.pi * e / 25)) for e in range(25)]  # cosine, T_max = 25, η₀ = 0.05
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-12, atol=1e-18)
    assert (history["grad_norm"] > 0).all()
    assert history["train_rmse"].notna().all() and history["validation_rmse"].notna().all()
    plateau = pd.read_csv(cases["mae"].run / "history.csv")
    assert plateau["learning_rate"].iloc[0] == 0.02 and plateau["grad_norm"].isna().all()


# ----------------------------------------------------------------------------- eval: tables


def test_eval_tables_classification(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "eval", cases["multi"].run, cases["multi"].test_csv)
    assert code == 0, err
    text = flat(out)
    for word in ("loss", "n_samples", "accuracy", "macro_f1", "precision", "recall", "f1", "support"):
        assert word in text
    assert "confusion matrix (rows: true, columns: predicted)" in text
    assert str(cases["multi"].test_csv) in text
    # the confusion matrix is labelled by class names, columns and rows
    matrix_part = out[out.index("confusion matrix") :]
    assert re.search(r"cat\s.*dog\s.*fox", matrix_part.splitlines()[2])
    assert sum(line.strip("│ ").startswith(("cat", "dog", "fox")) for line in matrix_part.splitlines()) == 3
    assert not err


def test_eval_tables_regression(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "eval", cases["regression"].run, cases["regression"].test_csv)
    assert code == 0
    for word in ("mse", "rmse", "mae", "r2", "mape", "per target", "y1", "y2"):
        assert word in out


# ----------------------------------------------------------------------------- eval and predict: errors


def test_eval_missing_feature_column_names_it(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases["multi"].frame.drop(columns=["f3"]).to_csv(tmp_path / "no_f3.csv", index=False)
    for command in ("eval", "predict"):
        code, out, err = run_cli(capsys, command, cases["multi"].run, tmp_path / "no_f3.csv")
        assert code == 2
        assert "'f3'" in err and "not found" in err and "no_f3.csv" in err
        assert "Traceback" not in err and out == ""


def test_eval_unseen_label_names_it(cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    frame = cases["multi"].frame.copy()
    frame.loc[5, "label"] = "wolf"
    frame.to_csv(tmp_path / "wolf.csv", index=False)
    code, out, err = run_cli(capsys, "eval", cases["multi"].run, tmp_path / "wolf.csv")
    assert code == 2
    assert "'wolf'" in err and "'label'" in err and "row 6" in err
    assert out == ""


def test_eval_missing_target_column(cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases["binary"].frame.drop(columns=["answer"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    code, _, err = run_cli(capsys, "eval", cases["binary"].run, tmp_path / "unlabelled.csv")
    assert code == 2 and "'answer'" in err


def test_eval_non_numeric_feature_names_column_and_row(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    frame = cases["regression"].frame.astype({"x2": object})
    frame.loc[2, "x2"] = "n/a?"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = run_cli(capsys, "eval", cases["regression"].run, tmp_path / "bad.csv")
    assert code == 2
    assert "'x2'" in err and "row 3" in err


@pytest.mark.parametrize("command", ["eval", "predict", "plot"])
def test_missing_run_directory(
    command: str, cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = [command, tmp_path / "no_such_run"] + ([cases["multi"].test_csv] if command != "plot" else [])
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert "no_such_run" in err and "Traceback" not in err
    assert out == ""


def test_eval_missing_csv(cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "eval", cases["multi"].run, tmp_path / "nope.csv")
    assert code == 2 and "nope.csv" in err


def test_eval_json_error_leaves_stdout_empty(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(capsys, "eval", tmp_path / "missing", cases["multi"].test_csv, "--json")
    assert code == 2 and out == "" and err


# ----------------------------------------------------------------------------- predict


def test_predict_classification_columns_and_row_order(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    case = cases["multi"]
    frame = case.frame.drop(columns=["label"]).assign(row_id=np.arange(len(case.frame))[::-1])
    frame.to_csv(tmp_path / "features.csv", index=False)  # no label needed to predict
    pred = predictions(capsys, case, tmp_path / "features.csv")
    assert len(pred) == len(frame)
    assert pred["row_id"].tolist() == frame["row_id"].tolist()  # input rows, in order
    assert {"prediction", "prob_cat", "prob_dog", "prob_fox"} <= set(pred.columns)
    probs = pred[["prob_cat", "prob_dog", "prob_fox"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert pred["prediction"].tolist() == [["cat", "dog", "fox"][i] for i in probs.argmax(axis=1)]
    np.testing.assert_allclose(pred[["f1", "f2", "f3", "f4"]].to_numpy(), frame[["f1", "f2", "f3", "f4"]].to_numpy())


def test_predict_matches_the_python_api(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    case = cases["multi"]
    expected = nnctl.load_run(case.run).predict(case.frame)
    pred = predictions(capsys, case)
    np.testing.assert_array_equal(
        pred["prob_dog"].to_numpy(), expected["prob_dog"].to_numpy()
    )  # CSV round-trips exactly


def test_with_predictions_appends_the_columns_and_refuses_to_shadow_one(cases: dict[str, Case]) -> None:
    case = cases["multi"]
    run = nnctl.load_run(case.run)
    out = run.with_predictions(case.frame, "f.csv")
    assert list(out.columns) == [*case.frame.columns, *run.predict(case.frame).columns]
    pd.testing.assert_frame_equal(out[list(case.frame.columns)], case.frame)
    with pytest.raises(DataError) as caught:
        run.with_predictions(out, "f.csv")
    assert str(caught.value) == (
        "f.csv: already has column(s) 'prediction', 'prob_cat', 'prob_dog', 'prob_fox', which predict writes; "
        "rename or drop them (is this a file of earlier predictions?)"
    )


def test_predict_binary_has_both_probability_columns(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str]
) -> None:
    pred = predictions(capsys, cases["binary"])
    assert {"prediction", "prob_no", "prob_yes"} <= set(pred.columns)
    np.testing.assert_allclose(pred["prob_no"] + pred["prob_yes"], 1.0, rtol=0, atol=1e-12)
    assert pred["prediction"].tolist() == ["yes" if p >= 0.5 else "no" for p in pred["prob_yes"]]
    assert len(pred) == 21


def test_predict_regression_columns(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    pred = predictions(capsys, cases["regression"])
    assert {"predicted_y1", "predicted_y2"} <= set(pred.columns)
    assert not any(c.startswith("prob_") or c == "prediction" for c in pred.columns)
    assert len(pred) == 21
    assert pred["y1"].tolist() == pytest.approx(cases["regression"].frame["y1"].tolist())


def test_predict_to_file_leaves_stdout_empty(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "out" / "predictions.csv"
    code, out, err = run_cli(capsys, "predict", cases["binary"].run, cases["binary"].test_csv, "-o", target)
    assert code == 0
    assert out == ""
    assert "21" in err and "predictions.csv" in err
    written = pd.read_csv(target)
    assert len(written) == 21 and {"prob_no", "prob_yes", "prediction"} <= set(written.columns)
    assert written.equals(predictions(capsys, cases["binary"]))  # the same text as on stdout


# ----------------------------------------------------------------------------- summary


def test_summary_json(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "summary", cases["multi"].config, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n_features"] == 4 and result["n_outputs"] == 3
    assert [layer["module"] for layer in result["layers"]] == [
        "input",
        "fully_connected",
        "tanh",
        "fully_connected",
        "softmax",
    ]
    # D*K + K for each fully_connected: 4*8 + 8 and 8*3 + 3
    assert [layer["parameters"] for layer in result["layers"]] == [0, 4 * 8 + 8, 0, 8 * 3 + 3, 0]
    assert result["total_parameters"] == 4 * 8 + 8 + 8 * 3 + 3
    assert [layer["output_shape"][1] for layer in result["layers"]] == [4, 8, 8, 3, 3]
    chain = result["jacobian_chain"]
    # ∂J/∂ŷ · ∂ŷ/∂h4 (softmax) · ∂h4/∂h3 (Wᵀ) · ∂h3/∂h2 (tanh) · ∂h2/∂h1 (Wᵀ) · ∂h1/∂x (input)
    assert [f["shape"] for f in chain] == [[1, 3], [3, 3], [3, 8], [8, 8], [8, 4], [4, 4]]
    assert [(f["of"], f["by"]) for f in chain[:2]] == [("J", "ŷ"), ("ŷ", "h4")]
    assert chain[-1]["by"] == "x"
    assert result["objective"] == "cross_entropy"
    assert result["train_rows"] == 60
    assert result == json.loads(json.dumps(set_up(load_config(cases["multi"].config)).summary()))  # the library's


def test_summary_shows_the_optimizer_and_its_schedule(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "summary", cases["huber"].config, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["optimizer"]["schedule"] == {"name": "cosine", "t_max": 25, "min_lr": 0.0}
    assert result["optimizer"]["clip_norm"] == 5.0
    rates = result["learning_rates"]
    assert (
        len(rates) == 25
        and rates[0] == 0.05
        and rates == pd.read_csv(cases["huber"].run / "history.csv")["learning_rate"].tolist()
    )  # what training then used, epoch by epoch
    code, out, err = run_cli(capsys, "summary", cases["huber"].config)
    assert code == 0, err
    text = flat(out)
    assert "optimizer: adam (learning_rate=0.05, clip_norm=5" in text
    assert "schedule: cosine (t_max=25, min_lr=0), stepped at the end of every epoch: 0.05 in epoch 1 →" in text
    code, out, _ = run_cli(capsys, "summary", cases["mae"].config)
    assert "schedule: plateau (factor=0.1, patience=10" in flat(out) and "on the training loss" in flat(out)
    code, out, _ = run_cli(capsys, "summary", cases["multi"].config, "--json")
    assert json.loads(out)["learning_rates"] is None and json.loads(out)["optimizer"]["schedule"] is None


def test_summary_regression_json(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "summary", cases["regression"].config, "--json")
    result = json.loads(out)
    assert code == 0
    assert result["total_parameters"] == 3 * 6 + 6 + 6 * 2 + 2
    assert result["jacobian_chain"][0]["shape"] == [1, 2]


def test_summary_table_and_chain(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "summary", cases["multi"].config)
    assert code == 0, err
    text = flat(out)
    for word in ("module", "output", "params", "fully_connected", "softmax", "total", "(N, 8)", "(N, 3)"):
        assert word in text
    assert re.search(r"total\b.*\b67\b", out)
    assert "∂J/∂ŷ ∈ R^{1×3} · ∂ŷ/∂h4 ∈ R^{3×3} · ∂h4/∂h3 ∈ R^{3×8} · ∂h3/∂h2 ∈ R^{8×8}" in text
    assert "60 training rows" in text


def test_summary_does_not_train(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_cli(capsys, "summary", cases["binary"].config)
    assert code == 0
    assert list(tmp_path.iterdir()) == []  # no run directory written


def test_summary_rejects_a_width_mismatch(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "summary", cases["multi"].config, "--set", "layers.3.fully_connected.units=4")
    assert code == 2
    assert "layers[3].fully_connected.units" in err and "3" in err
    assert out == ""


def test_summary_missing_data_column(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "summary", cases["multi"].config, "--set", "data.target=species")
    assert code == 2 and "'species'" in err


# ----------------------------------------------------------------------------- plot


def test_plot_writes_a_labelled_png(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    figures = []
    original_close = plt.close

    def close(fig=None):
        figures.append(fig)
        return original_close(fig)

    monkeypatch.setattr(plt, "close", close)
    target = tmp_path / "curves.png"
    code, out, err = run_cli(capsys, "plot", cases["binary"].run, "-o", target)
    assert code == 0, err
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert "curves.png" in flat(out)
    (fig,) = figures
    loss_ax, metric_ax = fig.axes
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("epoch", "log_loss (log scale)")  # the objective, named
    assert loss_ax.get_yscale() == "log"
    assert (metric_ax.get_xlabel(), metric_ax.get_ylabel()) == ("epoch", "accuracy")
    assert loss_ax.get_title() and fig._suptitle is not None and "binary" in fig._suptitle.get_text()
    labels = {line.get_label() for line in loss_ax.get_lines()}
    assert {"train", "validation"} <= labels  # binary has a validation CSV
    assert labels - {"train", "validation"} == {
        f"best epoch ({json.loads((cases['binary'].run / 'model.json').read_text())['best_epoch']})"
    }
    assert len(loss_ax.get_lines()[0].get_xdata()) == 25  # one point per epoch


def test_plot_default_path_inside_the_run(cases: dict[str, Case], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_cli(capsys, "plot", cases["regression"].run)
    assert code == 0
    png = cases["regression"].run / "learning_curves.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE


READS = """
import collections, os, sys
from nnctl.cli import main
runs = sys.argv[1:-1]
reads = collections.Counter()
def count(event, args):
    name = os.fsdecode(args[0]) if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) else ""
    if any(name.startswith(run) for run in runs):
        reads[os.path.relpath(name, os.path.dirname(runs[0]))] += 1
sys.addaudithook(count)
code = main(["plot", *runs, "-o", sys.argv[-1]])
print(dict(reads))
"""


@pytest.mark.parametrize("several", [False, True])
def test_plot_reads_each_runs_model_json_once(several: bool, cases: dict[str, Case], tmp_path: Path) -> None:
    """model.json (the note on an unfinished run, the loss's name, the best epoch) and, for one run, history.csv."""
    runs = [cases["binary"].run, cases["multi"].run][: 2 if several else 1]
    args = [sys.executable, "-c", READS, *map(str, runs), str(tmp_path / "x.png")]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    reads = ast.literal_eval(done.stdout.splitlines()[-1])
    assert all(reads[f"{run.name}/model.json"] == 1 for run in runs), reads
    if not several:
        assert reads == {"binary/model.json": 1, "binary/history.csv": 1}


def test_plot_without_matplotlib_says_how_to_install(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    code, out, err = run_cli(capsys, "plot", cases["multi"].run, "-o", tmp_path / "x.png")
    assert code == 2
    assert "matplotlib" in err and "pip install" in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "x.png").exists()


# ----------------------------------------------------------------------------- train's sparkline


def test_train_summary_shows_a_loss_sparkline(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(
        capsys, "train", cases["multi"].config, "--out", tmp_path / "run", "--set", "training.epochs=6"
    )
    assert code == 0, err
    line = next(line for line in out.splitlines() if "train loss" in line)
    assert re.search(f"[{SPARKS}]{{6}}", line), line  # one character per epoch
    assert str(tmp_path / "run") in flat(out)


def test_train_quiet_prints_nothing(cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(
        capsys, "train", cases["multi"].config, "--out", tmp_path / "run", "-q", "--set", "training.epochs=2"
    )
    assert code == 0 and out == "" and err == ""


def test_train_lines_show_the_rate_once_a_schedule_changes_it_and_the_gradient_norm(
    cases: dict[str, Case], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    schedule = "optimizer.schedule={name: step, step_size: 2, gamma: 0.5}"
    sets = ["--set", "training.epochs=4", "--set", schedule, "--set", "optimizer.clip_norm=0.5"]
    code, out, err = run_cli(capsys, "train", cases["multi"].config, "--out", tmp_path / "run", *sets)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 4
    assert " lr " not in lines[0] and " lr " not in lines[1]  # 0.05 twice: nothing to show yet
    assert "  lr 0.025  " in lines[2] and "  lr 0.025  " in lines[3]
    assert all(re.search(r"  grad_norm \d", line) for line in lines)
    assert "grad_norm" not in out[out.index("epochs ") :]  # not one of the model's numbers in the summary table
