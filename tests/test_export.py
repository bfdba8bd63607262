"""`nnctl export`: the ONNX graph, run with onnxruntime, gives what `nnctl predict` gives (docs/reference.md).

Every example config (float32 and float64), multi-target regression, several 0/1 targets, and every registered
layer alone in a stack: same labels, and probabilities or predictions within 1e-5 × max(1, |value|).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from helpers import ONNX_LARGEST, layer_options, run_cli, write_config

import nnctl
from nnctl.data import Encoding
from nnctl.errors import RunError
from nnctl.experiment import train
from nnctl.export import EXPORTERS, OPSET, to_onnx
from nnctl.layers import LAYERS, Activation
from nnctl.network import Network, build_modules
from nnctl.objectives import CrossEntropy
from nnctl.run import Run, load_run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
TOLERANCE = 1e-5  # × max(1, |value|)


def held_out(name: str) -> Path:
    """An example's held-out file: its training file's `_test` twin (xor's one file is both)."""
    train = Path(nnctl.load_config(ROOT / "configs" / f"{name}.yaml").data.train)
    return train.with_name(train.name.replace("_train", "_test"))


def run_onnx(path: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every output of the ONNX model on the frame's feature columns (named in the model's metadata)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    features = json.loads(metadata["features"])
    feeds = {"features": frame[features].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)}
    for name in json.loads(metadata.get("inputs", "[]")):  # categorical columns: one [N, 1] input each
        if name != "features":
            text = session.get_inputs()[len(feeds)].type == "tensor(string)"
            feeds[name] = frame[[name]].astype(str).to_numpy(object) if text else frame[[name]].to_numpy(np.int64)
    outputs = session.run(None, {k: v for k, v in feeds.items() if features or k != "features"})
    return {o.name: value for o, value in zip(session.get_outputs(), outputs, strict=True)}


def assert_close(onnx_values: np.ndarray, nnctl_values: np.ndarray, where: str) -> None:
    """|a − b| ≤ 1e-5 × max(1, |b|) everywhere; the largest ratio is kept for the session's report."""
    b = np.asarray(nnctl_values, dtype=np.float64)
    error = float(np.max(np.abs(onnx_values.astype(np.float64) - b) / np.maximum(1.0, np.abs(b))))
    ONNX_LARGEST.append((error, where))
    assert onnx_values.shape == b.shape, where
    assert error <= TOLERANCE, f"{where}: onnxruntime differs from nnctl by {error:.3g} × max(1, |value|)"


def predict_cli(capsys: pytest.CaptureFixture[str], run: Path, csv: Path) -> pd.DataFrame:
    code, out, err = run_cli(capsys, "predict", run, csv)
    assert code == 0, err
    return pd.read_csv(io.StringIO(out), keep_default_na=False)


def export_cli(capsys: pytest.CaptureFixture[str], run: Path, *args: object) -> str:
    code, out, err = run_cli(capsys, "export", run, *args)
    assert code == 0, err
    return out


def compare(outputs: dict[str, np.ndarray], predicted: pd.DataFrame, run: Run, where: str) -> None:
    """The ONNX outputs against nnctl's prediction columns for the same rows."""
    enc, task = run.encoding, run.task
    if not task.classification:
        assert set(outputs) == {"predictions"}
        assert_close(outputs["predictions"], predicted[[f"predicted_{t}" for t in enc.targets]].to_numpy(), where)
    elif task.multilabel:
        assert_close(outputs["probabilities"], predicted[[f"prob_{t}" for t in enc.targets]].to_numpy(), where)
        assert outputs["label"].dtype == np.int64
        assert outputs["label"].tolist() == predicted[[f"predicted_{t}" for t in enc.targets]].to_numpy().tolist()
    else:
        assert_close(outputs["probabilities"], predicted[[f"prob_{c}" for c in enc.classes]].to_numpy(), where)
        labels = outputs["label"].tolist()
        assert all(isinstance(v, type(c)) for v, c in zip(labels, enc.classes * len(labels), strict=False))
        assert [str(v) for v in labels] == predicted["prediction"].astype(str).tolist(), where


# ----------------------------------------------------------------------------- every example, both dtypes


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_exports_and_matches_predict(
    name: str, dtype: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = nnctl.load_config(ROOT / "configs" / f"{name}.yaml", [f"dtype={dtype}", "training.epochs=20"])
    run_dir = train(config, out=tmp_path / name).path
    message = export_cli(capsys, run_dir)
    assert f"wrote {run_dir / 'model.onnx'}" in message
    frame = pd.read_csv(held_out(name), keep_default_na=False)
    outputs = run_onnx(run_dir / "model.onnx", frame)
    compare(outputs, predict_cli(capsys, run_dir, held_out(name)), load_run(run_dir), f"{name} {dtype}")


# ----------------------------------------------------------------------------- other tasks


TOY_TASKS = {
    "multi-target regression": ("squared_error", ["y1", "y2"], "linear"),
    "several 0/1 targets": ("log_loss", ["hot", "cold"], "logistic"),
    "integer classes": ("cross_entropy", ["k"], "softmax"),
    "binary integer": ("log_loss", ["k2"], "logistic"),
}


def _toy_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, -3.0]
    score = X[:, 0] - 0.1 * (X[:, 1] - 50) + 5 * (X[:, 2] + 3)
    return pd.DataFrame(
        {
            "a": X[:, 0],
            "b": X[:, 1],
            "c": X[:, 2],
            "y1": 3 * score + 100,
            "y2": -score,
            "hot": (score > 0).astype(int),
            "cold": (score < -0.5).astype(int),
            "k": np.digitize(score, [-1, 0, 1]) * 10 + 5,  # 5, 15, 25, 35: integer classes, not 0…K−1
            "k2": np.where(score > 0, 7, 3),
        }
    )


@pytest.mark.parametrize("normalize", ["zscore", "none"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("task", TOY_TASKS)
def test_other_tasks_export_and_match_predict(
    task: str, dtype: str, normalize: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objective, targets, output = TOY_TASKS[task]
    _toy_frame(80, 0).to_csv(tmp_path / "train.csv", index=False)
    _toy_frame(30, 1).to_csv(tmp_path / "test.csv", index=False)
    classes = 4 if task == "integer classes" else 1 if task == "binary integer" else len(targets)
    config = {
        "dtype": dtype,
        "data": {"train": "train.csv", "target": targets, "features": ["a", "b", "c"]},
        "layers": [{"input": {"normalize": normalize}}, {"fully_connected": {"units": 6}}, "tanh"]
        + [{"fully_connected": {"units": classes}}, output],
        "objective": objective,
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "training": {"epochs": 15, "batch_size": 16},
    }
    run_dir = train(nnctl.load_config(write_config(tmp_path / "toy.yaml", config)), out=tmp_path / "run").path
    export_cli(capsys, run_dir, "-o", tmp_path / "toy.onnx")
    outputs = run_onnx(tmp_path / "toy.onnx", _toy_frame(30, 1))
    compare(outputs, predict_cli(capsys, run_dir, tmp_path / "test.csv"), load_run(run_dir), f"{task} {dtype}")


# ----------------------------------------------------------------------------- every layer


def test_every_registered_layer_has_an_exporter() -> None:
    """A layer registered in nnctl.layers.LAYERS without an exporter in nnctl.export.EXPORTERS fails here."""
    missing = sorted({cls.name for cls in LAYERS.values()} - set(EXPORTERS))
    assert not missing, f"layers without an ONNX exporter: {missing}; add one to nnctl.export.EXPORTERS"


HIDDEN_LAYERS = sorted({cls.name for cls in LAYERS.values()} - {"input", "fully_connected"})  # dropout too


def _stack_run(name: str, dtype: str, tmp_path: Path, options: dict[str, Any] | None = None) -> Run:
    """input → fully_connected(5) → LAYER → fully_connected(3) → softmax, input fitted, as a loaded Run."""
    rng = np.random.default_rng(0)
    layer = (name, options if options is not None else layer_options(name, 5))
    layers = [("input", {}), ("fully_connected", layer_options("fully_connected", 5)), layer]
    layers += [("fully_connected", layer_options("fully_connected", 3)), ("softmax", {})]
    modules = build_modules(layers, 4, dtype=dtype, rng=rng)
    network = Network(modules, CrossEntropy())
    network.input.fit(rng.normal(size=(50, 4)) * 3)  # type: ignore[union-attr]
    encoding = Encoding(["f1", "f2", "f3", "f4"], ["label"], "cross_entropy", ["x", "y", "z"])
    return Run(tmp_path, network, encoding, {"name": f"{name} stack"})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", HIDDEN_LAYERS)
def test_every_registered_layer_exports_like_its_forward(name: str, dtype: str, tmp_path: Path) -> None:
    run = _stack_run(name, dtype, tmp_path)
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(run).SerializeToString())
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(64, 4)) * 4, columns=run.encoding.features)  # both sides of every kink
    outputs = run_onnx(path, frame)
    compare(outputs, run.predict(frame), run, f"{name} stack {dtype}")


@pytest.mark.parametrize("alpha", [0.2, 1.5])
def test_leaky_relu_exports_its_own_alpha(alpha: float, tmp_path: Path) -> None:
    run = _stack_run("leaky_relu", "float64", tmp_path, {"alpha": alpha})
    model = to_onnx(run)
    (node,) = [n for n in model.graph.node if n.op_type == "LeakyRelu"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} == {"alpha": pytest.approx(alpha)}
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(64, 4)) * 4, columns=run.encoding.features)
    compare(run_onnx(path, frame), run.predict(frame), run, f"leaky_relu alpha={alpha}")


def test_a_layer_without_exporter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Cube(Activation):
        name = "cube"

        def activate(self, z: np.ndarray) -> np.ndarray:
            return z**3

    monkeypatch.setitem(LAYERS, "cube", Cube)
    with pytest.raises(AssertionError, match="cube"):
        test_every_registered_layer_has_an_exporter()
    with pytest.raises(RunError, match=r"layers\[2\]: layer 'cube' has no ONNX exporter"):
        to_onnx(_stack_run("cube", "float64", tmp_path))


# ----------------------------------------------------------------------------- the file itself


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = nnctl.load_config(ROOT / "configs" / "iris.yaml", ["training.epochs=5"])
    return train(config, out=tmp_path_factory.mktemp("export") / "iris").path


def test_graph_is_valid_with_the_documented_inputs_outputs_and_metadata(
    iris_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "iris.onnx"
    export_cli(capsys, iris_run, "-o", path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET] and OPSET >= 17
    (features,) = model.graph.input
    assert features.name == "features" and features.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in features.type.tensor_type.shape.dim] == ["N", 4]
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert list(outputs) == ["probabilities", "label"]
    assert outputs["label"].elem_type == onnx.TensorProto.STRING
    assert [d.dim_param or d.dim_value for d in outputs["probabilities"].shape.dim] == ["N", 3]
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {
        "features": json.dumps(["sepal_length", "sepal_width", "petal_length", "petal_width"]),
        "classes": json.dumps(["setosa", "versicolor", "virginica"]),
        "objective": "cross_entropy",
        "nnctl_version": nnctl.__version__,
    }


def test_regression_metadata_names_targets(tmp_path: Path) -> None:
    config = nnctl.load_config(ROOT / "configs" / "diabetes.yaml", ["training.epochs=2"])
    model = to_onnx(load_run(train(config, out=tmp_path / "d").path))
    props = {p.key: p.value for p in model.metadata_props}
    assert set(props) == {"features", "targets", "objective", "nnctl_version"}
    assert json.loads(props["targets"]) == ["progression"] and props["objective"] == "squared_error"


@pytest.mark.parametrize("numeric", [True, False])
def test_categorical_metadata_names_the_graph_inputs(numeric: bool, tmp_path: Path) -> None:
    overrides = ["training.epochs=2"] + ([] if numeric else ["data.features=[island, sex]"])
    config = nnctl.load_config(ROOT / "configs" / "penguins.yaml", overrides)
    model = to_onnx(load_run(train(config, out=tmp_path / "p").path))
    props = {p.key: p.value for p in model.metadata_props}
    inputs = (["features"] if numeric else []) + ["island", "sex"]
    assert [value.name for value in model.graph.input] == json.loads(props["inputs"]) == inputs
    assert json.loads(props["categories"]) == {"island": ["Biscoe", "Dream", "Torgersen"], "sex": ["female", "male"]}
    assert (json.loads(props["features"]) != []) == numeric


def test_export_errors_exit_2(iris_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "export", iris_run, "--format", "tflite")
    assert code == 2 and "unknown format 'tflite'; expected onnx" in err
    code, _, err = run_cli(capsys, "export", tmp_path / "nothing")
    assert code == 2 and "run directory not found" in err
    assert not (tmp_path / "nothing").exists()


def test_without_onnx_export_names_the_install_command(iris_run: Path, tmp_path: Path) -> None:
    """A real process in which `import onnx` fails, as it does where the extra is not installed."""
    script = "import sys; sys.modules['onnx'] = None; from nnctl.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "m.onnx"
    done = subprocess.run(
        [sys.executable, "-c", script, "export", str(iris_run), "-o", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "nnctl[onnx]"' in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_the_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README.md's onnxruntime example, as written, from a project directory holding runs/iris."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using an exported model") :]
    code = section[
        section.index("```python\n") + len("```python\n") : section.index("```\n", section.index("```python"))
    ]
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(ROOT / "data")
    config = nnctl.load_config(ROOT / "configs" / "iris.yaml", ["training.epochs=5"])
    export_cli(capsys, train(config, out="runs/iris").path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (the project's own README)
    expected = load_run("runs/iris").predict(pd.read_csv("data/iris_test.csv"))
    assert namespace["labels"].tolist() == expected["prediction"].tolist()
    assert_close(namespace["probabilities"], expected.filter(like="prob_").to_numpy(), "README example")
