"""`nnctl gradcheck` and nnctl.gradcheck: every gradient against central differences, and proof it can fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from nnctl import gradcheck as gc
from nnctl.layers import LAYERS, Dropout, FullyConnected, Softmax, Tanh
from nnctl.network import Network, build_modules
from nnctl.objectives import OBJECTIVES, CrossEntropy, SquaredError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
CHECK_KEYS = {"module", "parameter", "shape", "max_abs_error", "max_rel_error", "passed"}


def run_json(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, dict]:
    code, out, err = run_cli(capsys, "gradcheck", *args, "--json")
    return code, json.loads(out)  # the whole of stdout is one JSON object


def assert_report_shape(report: dict) -> None:
    assert set(report) == {"passed", "checks"}
    assert isinstance(report["passed"], bool)
    assert report["checks"]
    for check in report["checks"]:
        assert set(check) == CHECK_KEYS
        assert isinstance(check["module"], str) and isinstance(check["parameter"], str)
        assert isinstance(check["shape"], list) and all(type(n) is int for n in check["shape"])
        assert isinstance(check["max_abs_error"], float) and isinstance(check["max_rel_error"], float)
        assert check["passed"] is (check["max_rel_error"] < 1e-4)
    assert report["passed"] is all(c["passed"] for c in report["checks"])


# ----------------------------------------------------------------------------- configs on disk


def _write(folder: Path, name: str, layers: str, objective: str, target: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"seed: 4\ndata: {{train: data.csv, target: {target}, features: [a, b, c]}}\n"
        f"layers:\n{layers}\nobjective: {objective}\ntraining: {{epochs: 1}}\n"
    )
    return path


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gradcheck")
    rng = np.random.default_rng(5)
    n = 30
    X = rng.normal(3.0, 2.0, size=(n, 3))
    columns = ",".join(["a", "b", "c", "kind", "answer", "y1", "y2"])
    kinds = np.array(["p", "q", "r"])[np.arange(n) % 3]
    answers = np.array(["no", "yes"])[np.arange(n) % 2]
    Y = rng.normal(size=(n, 2))
    lines = [columns] + [f"{X[i, 0]},{X[i, 1]},{X[i, 2]},{kinds[i]},{answers[i]},{Y[i, 0]},{Y[i, 1]}" for i in range(n)]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    features = "  - input\n"
    return {
        "cross_entropy": _write(
            folder,
            "multi",
            features + "  - fully_connected: {units: 5}\n  - tanh\n  - fully_connected: {units: 3}\n  - softmax",
            "cross_entropy",
            "kind",
        ),
        "log_loss": _write(
            folder,
            "binary",
            features + "  - fully_connected: {units: 4}\n  - relu\n  - fully_connected: {units: 1}\n  - sigmoid",
            "log_loss",
            "answer",
        ),
        "squared_error": _write(
            folder,
            "regression",
            features + "  - fully_connected: {units: 4}\n  - logistic\n  - fully_connected: {units: 2}\n  - linear",
            "squared_error",
            "[y1, y2]",
        ),
        "broken": _write(
            folder,
            "broken",
            features + "  - fully_connected: {units: 4}\n  - broken_tanh\n  - fully_connected: {units: 3}\n  - softmax",
            "cross_entropy",
            "kind",
        ),
    }


# ----------------------------------------------------------------------------- every built-in module


def test_builtin_json_covers_every_module_and_objective(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys)
    assert code == 0
    assert_report_shape(report)
    assert report["passed"] is True
    modules = {c["module"] for c in report["checks"]}
    for cls in set(LAYERS.values()):
        assert cls.name in modules, cls
    for name in OBJECTIVES:
        assert name in modules
        assert any(m.startswith(f"{name} stack: ") for m in modules), name  # one stack per objective
    softmax = {c["parameter"]: c for c in report["checks"] if c["module"] == "softmax"}
    assert softmax["gradient() (N, K, K)"]["shape"] == [8, 5, 5]  # the full Jacobian, default 8 rows
    assert {c["parameter"] for c in report["checks"] if c["module"] == "fully_connected"} == {"W", "b", "δ (input)"}


def test_builtin_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "gradcheck", "--rows", "3")
    assert code == 0, err
    assert "gradient check" in out and "softmax" in out and "rel" in out
    count = len(gc.check_builtin(3))
    assert f"all {count} checks passed" in out
    assert "✗" not in out


def test_builtin_rows_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "--rows", "2")
    assert code == 0
    deltas = [c for c in report["checks"] if c["parameter"] == "δ (input)"]
    assert deltas and all(c["shape"][0] == 2 for c in deltas)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_configs_pass(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, config, "--rows", "3")
    assert_report_shape(report)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert code == 0 and report["passed"], failed


@pytest.mark.parametrize("objective", ["cross_entropy", "log_loss", "squared_error"])
def test_config_checks_every_parameter_and_boundary(
    objective: str, configs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, configs[objective], "--rows", "5")
    assert code == 0
    assert_report_shape(report)
    checks = report["checks"]
    labels = [(c["module"], c["parameter"]) for c in checks]
    # five modules: a δ check at each input boundary, W and b for both fully_connected layers
    assert [p for _, p in labels].count("δ (input)") == 5
    assert ("fully_connected (layers[1])", "W") in labels and ("fully_connected (layers[3])", "b") in labels
    shapes = {(c["module"], c["parameter"]): c["shape"] for c in checks}
    assert shapes[("fully_connected (layers[1])", "W")] == [3, 4 if objective != "cross_entropy" else 5]
    assert shapes[("input (layers[0])", "δ (input)")] == [5, 3]  # --rows 5 of the 3 features


def test_eps_option_changes_the_differences(configs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, coarse = run_json(capsys, configs["cross_entropy"], "--eps", "1e-3", "--rows", "4")
    _, fine = run_json(capsys, configs["cross_entropy"], "--eps", "1e-6", "--rows", "4")
    assert coarse["passed"] and fine["passed"]
    errors = lambda r: [c["max_abs_error"] for c in r["checks"]]  # noqa: E731
    assert errors(coarse) != errors(fine)
    # Central differences err by O(eps²): a step of 1e-3 leaves larger errors than 1e-6 on the nonlinear parts.
    assert max(errors(coarse)) > max(errors(fine))


def test_float32_config_is_checked_in_float64(configs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, configs["squared_error"], "--set", "dtype=float32")
    assert code == 0 and report["passed"]
    assert max(c["max_rel_error"] for c in report["checks"]) < 1e-6  # float32 could not get near this


def test_config_error_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "gradcheck", tmp_path / "missing.yaml", "--json")
    assert code == 2 and "missing.yaml" in err and out == ""


@pytest.mark.parametrize("option", [["--rows", "0"], ["--eps", "0"], ["--rows", "many"]])
def test_bad_option_values_are_usage_errors(
    option: list[str], configs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "gradcheck", configs["cross_entropy"], *option)
    assert code == 2, err
    assert option[0] in err and "internal error" not in err and out == ""


# ----------------------------------------------------------------------------- the checker can fail


class BrokenTanh(Tanh):
    """tanh whose backward is 1% too large."""

    name = "broken_tanh"

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return super().backward(delta) * 1.01


_BACKWARD_PARAMS = FullyConnected.backward_params  # the real one, kept before any monkeypatching


def _drop_bias_gradient(self: FullyConnected, delta: np.ndarray) -> None:
    _BACKWARD_PARAMS(self, delta)
    self.grads["b"][...] = 0.0  # forgets ∂J/∂b = mean(δ)


class NoBiasGradient(FullyConnected):
    backward_params = _drop_bias_gradient


def test_cli_catches_a_registered_broken_layer(
    configs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(LAYERS, "broken_tanh", BrokenTanh)
    code, report = run_json(capsys, configs["broken"])
    assert code == 1
    assert_report_shape(report)
    assert report["passed"] is False
    failed = {(c["module"], c["parameter"]) for c in report["checks"] if not c["passed"]}
    # the wrong δ and everything backprop computes from it fail; what lies after it passes
    assert failed == {
        ("broken_tanh (layers[2])", "δ (input)"),
        ("fully_connected (layers[1])", "W"),
        ("fully_connected (layers[1])", "b"),
        ("fully_connected (layers[1])", "δ (input)"),
        ("input (layers[0])", "δ (input)"),
    }
    worst = max(c["max_rel_error"] for c in report["checks"])
    assert worst == pytest.approx(0.01 / 1.01, rel=1e-3)

    code, out, _ = run_cli(capsys, "gradcheck", configs["broken"])
    assert code == 1
    assert "✗" in out and "5 of 9 checks failed" in " ".join(out.split())


def test_cli_catches_a_dropped_bias_gradient(
    configs: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FullyConnected, "backward_params", _drop_bias_gradient)
    code, report = run_json(capsys, configs["squared_error"])
    assert code == 1
    failed = {(c["module"], c["parameter"]) for c in report["checks"] if not c["passed"]}
    assert failed == {("fully_connected (layers[1])", "b"), ("fully_connected (layers[3])", "b")}


def test_builtin_catches_a_registered_broken_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(LAYERS, "broken_tanh", BrokenTanh)
    code, report = run_json(capsys, "--rows", "3")
    assert code == 1 and report["passed"] is False
    failed = {(c["module"], c["parameter"]) for c in report["checks"] if not c["passed"]}
    assert failed == {("broken_tanh", "δ (input)")}


def _stack(rng: np.random.Generator, hidden: type = Tanh, fc: type = FullyConnected) -> Network:
    modules = build_modules([("input", {}), ("fully_connected", {"units": 4})], 3, rng=rng)
    modules[1] = fc(3, 4, rng=rng)
    modules += [hidden(), fc(4, 2, rng=rng), Softmax()]
    modules[0].fit(rng.normal(size=(20, 3)))
    return Network(modules, CrossEntropy())


def _data(rng: np.random.Generator, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    return rng.normal(size=(n, 3)), np.eye(2)[rng.integers(0, 2, size=n)]


def test_check_network_passes_a_correct_network() -> None:
    rng = np.random.default_rng(0)
    checks = gc.check_network(_stack(rng), *_data(rng))
    assert len(checks) == 5 + 4  # a δ per module, W and b per fully_connected
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_check_network_catches_backward_off_by_one_percent() -> None:
    rng = np.random.default_rng(0)
    checks = gc.check_network(_stack(rng, hidden=BrokenTanh), *_data(rng))
    by_label = {(c.module, c.parameter): c for c in checks}
    assert not by_label[("broken_tanh (layers[2])", "δ (input)")].passed
    assert not by_label[("fully_connected (layers[1])", "W")].passed
    assert by_label[("fully_connected (layers[3])", "W")].passed  # downstream of the bug: right


def test_check_network_catches_a_dropped_bias_gradient() -> None:
    rng = np.random.default_rng(0)
    checks = gc.check_network(_stack(rng, fc=NoBiasGradient), *_data(rng))
    failed = {(c.module, c.parameter) for c in checks if not c.passed}
    assert failed == {("fully_connected (layers[1])", "b"), ("fully_connected (layers[3])", "b")}
    assert all(c.max_rel_error == pytest.approx(1.0) for c in checks if not c.passed)  # analytic 0 vs numeric n


def test_check_module_catches_a_wrong_softmax_jacobian() -> None:
    class DiagonalSoftmax(Softmax):
        def gradient(self) -> np.ndarray:  # forgets the off-diagonal −g_i g_j terms
            g = self._g
            return g[:, :, None] * np.eye(g.shape[1])

    rng = np.random.default_rng(1)
    checks = gc.check_module(DiagonalSoftmax(), rng.normal(size=(4, 3)), rng)
    by_parameter = {c.parameter: c for c in checks}
    assert by_parameter["δ (input)"].passed  # backward is still right
    assert not by_parameter["gradient() (N, K, K)"].passed


class UnscaledDropout(Dropout):
    """dropout whose backward forgets the 1 / (1 − rate)."""

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return super().backward(delta) * (1 - self.rate)


@pytest.mark.parametrize(("cls", "passes"), [(Dropout, True), (UnscaledDropout, False)])
def test_dropout_is_checked_in_training_mode_with_one_fixed_mask(cls: type, passes: bool) -> None:
    rng = np.random.default_rng(3)
    module = cls(0.5, np.random.default_rng(4))
    gc.fix_noise([module])
    x = rng.normal(size=(8, 5))
    checks = {c.parameter: c for c in gc.check_module(module, x, rng)}
    mask = module.gradient()
    assert set(np.unique(mask)) == {0.0, 2.0}  # a real mask was in place: some units dropped, the rest doubled
    assert checks["δ (input)"].passed is passes
    assert checks["gradient() diagonal"].passed  # gradient() itself is right in both


def test_builtin_checks_dropout_and_the_new_objectives_in_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys)
    assert code == 0
    labels = {(c["module"], c["parameter"]) for c in report["checks"]}
    for name in ("dropout", "leaky_relu", "softplus"):
        assert (name, "δ (input)") in labels and (name, "gradient() diagonal") in labels
    for name in ("absolute_error", "huber"):
        assert (name, "∂J/∂ŷ") in labels
        assert (f"{name} stack: dropout (layers[3])", "δ (input)") in labels  # dropout inside a network too


def test_a_config_with_dropout_is_checked_as_evaluation_sees_it(
    configs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, configs["squared_error"], "--set", "layers.2={dropout: {rate: 0.5}}")
    assert code == 0 and report["passed"]
    assert ("dropout (layers[2])", "δ (input)") in {(c["module"], c["parameter"]) for c in report["checks"]}


def test_check_objective_catches_a_wrong_gradient() -> None:
    class WrongSquaredError(SquaredError):
        def gradient(self, y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
            return -2.02 * (y - yhat)

    rng = np.random.default_rng(2)
    y, yhat = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    assert gc.check_objective(SquaredError(), y, yhat).passed
    assert not gc.check_objective(WrongSquaredError(), y, yhat).passed


# ----------------------------------------------------------------------------- the arithmetic


def test_compare_uses_the_normwise_relative_error() -> None:
    analytic = np.array([[1.0, 0.0], [-4.0, 2.0]])
    numeric = np.array([[1.0, 1e-9], [-4.0008, 2.0]])
    check = gc.compare("m", "W", analytic, numeric)
    assert check.shape == [2, 2]
    assert check.max_abs_error == pytest.approx(8e-4)
    assert check.max_rel_error == pytest.approx(8e-4 / 4.0008)  # over max(max|a|, max|n|), not element-wise
    assert check.passed is False
    # an exact zero against rounding noise passes (element-wise it would be an error of 100%)
    assert gc.compare("m", "W", np.array([0.0, 3.0]), np.array([1e-11, 3.0])).passed
    zeros = gc.compare("m", "W", np.zeros(3), np.zeros(3))
    assert (zeros.max_abs_error, zeros.max_rel_error, zeros.passed) == (0.0, 0.0, True)


def test_numerical_gradient_is_central_and_restores_the_input() -> None:
    x = np.array([[0.5, -1.0, 2.0]])
    before = x.copy()
    grad = gc.numerical_gradient(lambda: float((x**3).sum()), x, 1e-3)
    # central difference of x³: ((x+h)³ − (x−h)³) / 2h = 3x² + h² exactly
    np.testing.assert_allclose(grad, 3 * before**2 + 1e-6, rtol=1e-9)
    np.testing.assert_array_equal(x, before)
