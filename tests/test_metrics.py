"""SPEC §5 metrics, worked out by hand on arrays small enough to check on paper."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from nnctl.metrics import classification_report, multilabel_report, regression_report


def one_hot(indices: list[int], k: int) -> np.ndarray:
    return np.eye(k)[indices]


def scores(indices: list[int], k: int) -> np.ndarray:
    """Softmax-like outputs whose argmax is `indices` (0.6 on the chosen class)."""
    out = np.full((len(indices), k), 0.4 / (k - 1))
    out[np.arange(len(indices)), indices] = 0.6
    return out


# ----------------------------------------------------------------------------- classification

# true:      0  0  1  1  2  2
# predicted: 0  1  1  1  0  2
#
#              predicted 0  1  2
# confusion  true 0     [1, 1, 0]
#            true 1     [0, 2, 0]
#            true 2     [1, 0, 1]
TRUE, PRED = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 2]


def test_three_class_report_by_hand() -> None:
    report = classification_report(one_hot(TRUE, 3), scores(PRED, 3), ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    per = report["per_class"]
    # precision = tp / column sum; recall = tp / row sum
    assert [per[c]["precision"] for c in "abc"] == pytest.approx([1 / 2, 2 / 3, 1 / 1])
    assert [per[c]["recall"] for c in "abc"] == pytest.approx([1 / 2, 2 / 2, 1 / 2])
    f1 = [0.5, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * 0.5 / 1.5]  # 0.5, 0.8, 0.667
    assert [per[c]["f1"] for c in "abc"] == pytest.approx(f1)
    assert [per[c]["support"] for c in "abc"] == [2, 2, 2]
    assert report["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert report["classes"] == ["a", "b", "c"]


def test_confusion_matrix_rows_are_true_classes() -> None:
    # Every row is truly class 0 and predicted class 1: the count sits in row 0, column 1.
    report = classification_report(one_hot([0, 0, 0], 2), scores([1, 1, 1], 2), ["neg", "pos"])
    assert report["confusion_matrix"] == [[0, 3], [0, 0]]
    assert report["per_class"]["neg"]["support"] == 3
    assert report["per_class"]["pos"]["support"] == 0


def test_class_never_predicted_scores_zero_without_a_warning() -> None:
    # Class 2 is true twice but never predicted: precision 0/0 → 0, recall 0/2 → 0, f1 0.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_report(one_hot([0, 1, 2, 2], 3), scores([0, 1, 1, 1], 3), [0, 1, 2])
    per = report["per_class"]
    assert per["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert per["1"]["precision"] == pytest.approx(1 / 3)
    assert per["1"]["recall"] == 1.0
    assert report["accuracy"] == 0.5
    assert report["macro_f1"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_class_absent_from_labels_and_predictions_does_not_lower_macro_f1() -> None:
    # A held-out file with only two of three classes, all right: macro-F1 is 1, as in
    # scikit-learn (labels present) and torchmetrics (classes with tp + fp + fn = 0 ignored).
    report = classification_report(one_hot([0, 0, 1], 3), scores([0, 0, 1], 3), ["a", "b", "c"])
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0
    assert report["per_class"]["c"]["support"] == 0


def test_binary_single_output_thresholds_at_one_half() -> None:
    Y = np.array([[0.0], [0.0], [1.0], [1.0]])
    yhat = np.array([[0.2], [0.5], [0.7], [0.49]])  # 0.5 counts as the positive class
    report = classification_report(Y, yhat, ["no", "yes"])
    assert report["confusion_matrix"] == [[1, 1], [1, 1]]
    assert report["accuracy"] == 0.5
    assert report["per_class"]["yes"]["precision"] == 0.5


def test_multilabel_report() -> None:
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    yhat = np.array([[0.9, 0.1], [0.2, 0.4], [0.8, 0.7]])
    report = multilabel_report(Y, yhat, ["p", "q"])
    assert report["accuracy"] == pytest.approx(5 / 6)
    assert report["confusion_matrix"]["q"] == [[1, 0], [1, 1]]
    assert report["per_class"]["p"]["f1"] == 1.0
    assert report["per_class"]["q"]["recall"] == 0.5


def test_classification_report_is_plain_json() -> None:
    report = classification_report(one_hot(TRUE, 3), scores(PRED, 3), [3, 5, 7])
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert all(type(v) is int for row in report["confusion_matrix"] for v in row)
    assert type(report["accuracy"]) is float and type(report["macro_f1"]) is float


# ----------------------------------------------------------------------------- regression

# target a: y = 1, 2, 3; ŷ = 1.5, 2, 2 → errors −0.5, 0, 1
# target b: y = 0, 2, 4; ŷ = 0, 1, 4   → errors 0, 1, 0 (and a 0 target: no MAPE)
Y_REG = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 4.0]])
YHAT_REG = np.array([[1.5, 0.0], [2.0, 1.0], [2.0, 4.0]])


def test_regression_report_by_hand() -> None:
    report = regression_report(Y_REG, YHAT_REG, ["a", "b"])
    a, b = report["per_target"]["a"], report["per_target"]["b"]
    assert a["mse"] == pytest.approx(1.25 / 3)
    assert a["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    assert a["mae"] == pytest.approx(1.5 / 3)
    assert a["r2"] == pytest.approx(1 - 1.25 / 2)  # SS_tot = 1 + 0 + 1
    assert a["mape"] == pytest.approx((0.5 / 1 + 0 + 1 / 3) / 3 * 100)
    assert b["mse"] == pytest.approx(1 / 3)
    assert b["mae"] == pytest.approx(1 / 3)
    assert b["r2"] == pytest.approx(1 - 1 / 8)  # SS_tot = 4 + 0 + 4
    assert b["mape"] is None
    # averaged over targets
    assert report["mse"] == pytest.approx((1.25 / 3 + 1 / 3) / 2)
    assert report["rmse"] == pytest.approx((math.sqrt(1.25 / 3) + math.sqrt(1 / 3)) / 2)
    assert report["mae"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert report["r2"] == pytest.approx((0.375 + 0.875) / 2)
    assert report["mape"] is None  # one target has a 0


def test_mape_is_a_percentage_when_no_target_is_zero() -> None:
    report = regression_report(np.array([[2.0], [4.0]]), np.array([[1.0], [5.0]]), ["y"])
    assert report["mape"] == pytest.approx((0.5 + 0.25) / 2 * 100)
    assert report["per_target"]["y"]["mape"] == report["mape"]


def test_mape_null_serialises_as_json_null() -> None:
    report = regression_report(Y_REG, YHAT_REG, ["a", "b"])
    text = json.dumps(report, allow_nan=False)
    assert '"mape": null' in text


def test_r2_of_a_constant_target() -> None:
    Y = np.array([[3.0], [3.0]])
    assert regression_report(Y, Y.copy(), ["y"])["r2"] == 1.0  # perfect, as scikit-learn
    assert regression_report(Y, np.array([[2.0], [4.0]]), ["y"])["r2"] == 0.0


def test_regression_report_accepts_float32() -> None:
    report = regression_report(Y_REG.astype(np.float32), YHAT_REG.astype(np.float32), ["a", "b"])
    assert type(report["mse"]) is float
    assert report["mse"] == pytest.approx((1.25 / 3 + 1 / 3) / 2)
