"""Fuzzing the inputs a user controls: every outcome is success or an NnctlError, never another exception.

Configs: random YAML documents, random text, random mutations of a valid config and random
`--set` overrides go through `validate_config` and `load_config`. CSVs: random text and random
grids (numbers, strings, blanks, NaN/inf, duplicate or empty headers, ragged rows) go through
`read_csv`, `infer_encoding`, `load_dataset` and `experiment.set_up`.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import toy_config, toy_layers
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nnctl.config import Config, load_config, validate_config
from nnctl.data import Dataset, Encoding, infer_encoding, load_dataset, read_csv
from nnctl.errors import NnctlError
from nnctl.experiment import Setup, set_up
from nnctl.layers import LAYERS
from nnctl.objectives import OBJECTIVES

# NNCTL_FUZZ_EXAMPLES=5000 runs a long, randomised search; the default is a quick, repeatable one.
_EXAMPLES = int(os.environ.get("NNCTL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize="NNCTL_FUZZ_EXAMPLES" not in os.environ,
    database=None,
)

VALID: dict[str, Any] = toy_config(
    name="fuzz",
    dtype="float64",
    data={"train": "train.csv", "target": "y", "features": ["a", "b"]},
    layers=toy_layers(hidden=4, activation="relu"),
    optimizer={"name": "adam", "learning_rate": 0.01},
    training={"epochs": 3, "batch_size": 2, "shuffle": True},
)

# ----------------------------------------------------------------------------- strategies

names = st.sampled_from(
    [
        *VALID,
        *VALID["data"],
        *VALID["optimizer"],
        *VALID["training"],
        *LAYERS,
        *OBJECTIVES,
        "units",
        "init",
        "normalize",
        "scale",
        "validation",
        "validation_split",
        "early_stopping",
        "patience",
        "tolerance",
        "momentum",
        "",
        "learnig_rate",
    ]
) | st.text(max_size=12)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | names
    | st.text(max_size=20)
)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(names | st.integers(-3, 3), children, max_size=5),
    max_leaves=25,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a nested dict/list document (the root is the empty path)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    """A valid config after a few random edits: delete, replace, rename, insert, layer-name changes."""
    doc: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "replace", "rename", "insert", "layer", "wrap"]))
        if op == "layer" and isinstance(doc, dict) and isinstance(doc.get("layers"), list) and doc["layers"]:
            i = draw(st.integers(0, len(doc["layers"]) - 1))
            kind = draw(st.sampled_from(list(LAYERS)) | st.text(max_size=10))
            doc["layers"][i] = draw(st.sampled_from([kind, {kind: draw(documents)}, {kind: None}]))
        elif not path:
            doc = draw(documents) if op == "replace" else doc
        elif op == "delete":
            parent = _parent(doc, path)
            del parent[path[-1]]
        elif op == "replace":
            _parent(doc, path)[path[-1]] = draw(documents)
        elif op == "rename" and isinstance(_parent(doc, path), dict):
            parent = _parent(doc, path)
            parent[draw(names)] = parent.pop(path[-1])
        elif op == "insert":
            target = _parent(doc, path)[path[-1]]
            if isinstance(target, dict):
                target[draw(names)] = draw(documents)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(documents))
        elif op == "wrap":
            parent = _parent(doc, path)
            parent[path[-1]] = draw(
                st.sampled_from([[parent[path[-1]]], {"x": parent[path[-1]]}, str(parent[path[-1]])])
            )
    return doc


def _check_config(raw: Any) -> None:
    try:
        config = validate_config(raw, "fuzz.yaml")
    except NnctlError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
        assert "Traceback" not in str(exc)
        event(type(exc).__name__)
        return
    event("valid")
    assert isinstance(config, Config)
    yaml.safe_dump(config.to_dict())  # a valid config can always be saved again


# ----------------------------------------------------------------------------- configs


@FUZZ
@given(documents)
def test_validate_config_random_documents(raw: Any) -> None:
    _check_config(raw)


@FUZZ
@given(mutated_configs())
def test_validate_config_mutated_valid_config(raw: Any) -> None:
    _check_config(raw)


def _load(text: str, overrides: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, overrides)
        except NnctlError as exc:
            assert str(path) in str(exc) or "--set" in str(exc), str(exc)
            event(type(exc).__name__)
        else:
            event("valid")


@FUZZ
@given(st.one_of(documents, mutated_configs()))
def test_load_config_random_yaml_files(raw: Any) -> None:
    _load(yaml.safe_dump(raw, allow_unicode=True))


@FUZZ
@given(
    st.text(max_size=200)
    | st.sampled_from(["{", "[a", "a: [", "a: b: c", "\t- x", "- 1\n- 2", "!!python/object:os.system x", "%YAML 9"])
)
def test_load_config_random_text(text: str) -> None:
    _load(text)


keys = st.lists(names | st.integers(-3, 6).map(str), min_size=1, max_size=4).map(".".join)
override_values = st.sampled_from(
    ["", "1", "-1", "0", "abc", "[1, 2]", "{a: 1}", "null", "[", "x: y", "1e400"]
) | st.text(max_size=10)


@FUZZ
@given(
    st.lists(
        st.tuples(keys, st.sampled_from(["=", "", "=="]), override_values).map("".join)
        | st.sampled_from(
            ["layers.1.units=3", "layers.2.units=3", "layers.9=relu", "layers.-1=tanh", "data=1", "data.x.y=1"]
        ),
        max_size=3,
    ),
    mutated_configs(),
)
def test_load_config_random_overrides(overrides: list[str], raw: Any) -> None:
    _load(yaml.safe_dump(raw, allow_unicode=True), overrides)


# ----------------------------------------------------------------------------- CSV data

cells = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", " ", "nan", "NaN", "inf", "-inf", "NA", "null", "true", "False", "x", "y", "1e999", '"', "a,b", "0", "1"]
    ),
    st.text(max_size=6),
)
headers = st.lists(
    st.sampled_from(["a", "b", "y", "z", "", "a.1", "0", " a"]) | st.text(max_size=4), min_size=1, max_size=4
)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    """Header and rows of random cells; rows may be ragged, headers repeated or blank."""
    header = draw(headers)
    width = len(header)
    rows = draw(st.lists(st.lists(cells, min_size=max(0, width - 1), max_size=width + 1), max_size=8))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@st.composite
def nearly_valid_csvs(draw: st.DrawFn) -> str:
    """A well-formed table (features a, b; targets y, z) with zero to two random defects."""
    columns = draw(st.permutations(["a", "b", "y", "z"]))
    n = draw(st.integers(1, 8))
    labels = draw(st.sampled_from([["x", "y"], ["x", "y", "w"], [0, 1], [0, 1, 2], [0.5, 1.5, -2.0], ["1", "x"]]))
    numbers = st.sampled_from([-1.5, 0, 1, 2, 3.25, 1e-3, 7])
    rows = [[draw(numbers) if c in ("a", "b") else draw(st.sampled_from(labels)) for c in columns] for _ in range(n)]
    rows = [[str(cell) for cell in row] for row in rows]
    header = list(columns)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        defect = draw(st.sampled_from(["cell", "ragged", "header", "drop_column"]))
        if defect == "cell":
            row, col = draw(st.integers(0, n - 1)), draw(st.integers(0, len(header) - 1))
            if col < len(rows[row]):
                rows[row][col] = draw(cells)
        elif defect == "ragged":
            row = draw(st.integers(0, n - 1))
            rows[row] = rows[row][:-1] if draw(st.booleans()) else [*rows[row], draw(cells)]
        elif defect == "header":
            header[draw(st.integers(0, len(header) - 1))] = draw(
                st.sampled_from(["a", "y", "", "b.1"]) | st.text(max_size=3)
            )
        elif len(header) > 1:
            col = draw(st.integers(0, len(header) - 1))
            header.pop(col)
            rows = [[cell for j, cell in enumerate(row) if j != col] for row in rows]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


csv_contents = nearly_valid_csvs() | csv_texts() | st.text(max_size=120)


def _write(folder: str, name: str, text: str) -> Path:
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def _allowed(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `call`; an NnctlError is a fine outcome (returns None), anything else fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call(*args, **kwargs)
    except NnctlError as exc:
        assert "Traceback" not in str(exc)
        event(f"{getattr(call, '__name__', call)}: {type(exc).__name__}")
        return None


@FUZZ
@given(
    csv_contents,
    st.sampled_from(list(OBJECTIVES)),
    st.sampled_from([["y"], ["y", "z"], ["a"], ["q"]]),
    st.sampled_from([None, ["a"], ["a", "b"], ["b", "z"]]),
)
def test_data_loaders_random_csv(text: str, objective: str, targets: list[str], features: list[str] | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "data.csv", text)
        frame = _allowed(read_csv, path, "data.train")
        if frame is None:
            return
        encoding = _allowed(infer_encoding, frame, str(path), targets, features, objective)
        if encoding is None:
            return
        dataset = _allowed(load_dataset, path, encoding)
        if dataset is not None:
            event("loaded")
            assert isinstance(dataset, Dataset)
            assert dataset.X.shape == (len(frame), len(encoding.features))
            assert np.isfinite(dataset.X).all() and np.isfinite(dataset.Y).all()
            assert dataset.Y.shape == (len(frame), encoding.n_outputs)


@FUZZ
@given(csv_contents, csv_contents)
def test_load_dataset_other_file_with_fixed_encoding(train: str, other: str) -> None:
    """A second file (validation, eval) encoded with the training file's encoding."""
    with tempfile.TemporaryDirectory() as folder:
        encodings = [
            Encoding(["a", "b"], ["y"], "cross_entropy", ["x", "y"]),
            Encoding(["a"], ["y"], "cross_entropy", [0, 1, 2]),
            Encoding(["a"], ["y"], "log_loss", [0, 1]),
            Encoding(["a"], ["y", "z"], "log_loss", []),
            Encoding(["a", "b"], ["y"], "squared_error", []),
        ]
        for text in (train, other):
            path = _write(folder, "other.csv", text)
            for encoding in encodings:
                _allowed(load_dataset, path, encoding)


SMALL = {
    "name": "fuzz",
    "data": {"train": "train.csv", "target": "y"},
    "layers": ["input", {"fully_connected": {"units": 2}}],
    "objective": "squared_error",
    "training": {"epochs": 1},
}
STACKS = {  # by how the objective reads its targets (nnctl.objectives.Targets)
    "values": ["input", {"fully_connected": {"units": 1}}],
    "classes": ["input", {"fully_connected": {"units": 2}}, "softmax"],
    "binary": ["input", {"fully_connected": {"units": 1}}, "logistic"],
}


@FUZZ
@given(
    nearly_valid_csvs() | csv_contents,
    st.none() | nearly_valid_csvs() | csv_contents,
    st.sampled_from(list(OBJECTIVES)),
    st.sampled_from([None, 0.5]),
    st.sampled_from([None, ["a"], ["a", "b"]]),
    st.sampled_from([2, 3]),
)
def test_prepare_random_csv(
    train: str, validation: str | None, objective: str, split: float | None, features: Any, classes: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _write(folder, "train.csv", train)
        layers = copy.deepcopy(STACKS[OBJECTIVES[objective].targets])
        if objective == "cross_entropy":
            layers[1]["fully_connected"]["units"] = classes
        raw = copy.deepcopy(SMALL) | {"objective": objective, "layers": layers}
        if features:
            raw["data"]["features"] = features
        if validation is not None:
            _write(folder, "valid.csv", validation)
            raw["data"]["validation"] = "valid.csv"
        elif split:
            raw["data"]["validation_split"] = split
        path = _write(folder, "fuzz.yaml", yaml.safe_dump(raw))
        config = load_config(path)
        setup = _allowed(set_up, config)
        if setup is not None:
            event("setup")
            assert isinstance(setup, Setup)
            assert setup.network.forward(setup.train.X).shape == setup.train.Y.shape


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fuzz_harness_accepts_a_good_csv(tmp_path: Path, dtype: str) -> None:
    """The fuzz loop above is not vacuous: a well-formed file does load and set_up."""
    (tmp_path / "train.csv").write_text("a,b,y\n1,2,0.5\n2,3,1.5\n3,5,2.5\n")
    raw = copy.deepcopy(SMALL) | {"layers": STACKS["values"], "dtype": dtype}
    (tmp_path / "fuzz.yaml").write_text(yaml.safe_dump(raw))
    setup = set_up(load_config(tmp_path / "fuzz.yaml"))
    assert setup.train.X.shape == (3, 2) and setup.train.X.dtype == np.dtype(dtype)
    assert validate_config(copy.deepcopy(VALID)).layers[1].options.units == 4


# ----------------------------------------------------------------------------- a trained model on random CSVs


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """One small trained model per objective (classes 'x'/'y'/'w', 0/1 and a number), loaded with load_run."""
    from nnctl.experiment import train
    from nnctl.run import load_run

    folder = tmp_path_factory.mktemp("fuzz_runs")
    (folder / "train.csv").write_text("a,b,y,z\n1,2,x,0.5\n2,3,y,1\n3,1,w,0\n4,4,x,1\n5,1,y,2\n")
    (folder / "binary.csv").write_text("a,b,y,z\n1,2,0,1\n2,3,1,0\n3,1,0,1\n4,4,1,1\n")
    runs = []
    for objective, train_csv, layers in [
        ("cross_entropy", "train.csv", ["input", {"fully_connected": {"units": 3}}, "softmax"]),
        ("log_loss", "binary.csv", ["input", {"fully_connected": {"units": 1}}, "logistic"]),
        ("squared_error", "train.csv", ["input", {"fully_connected": {"units": 1}}]),
    ]:
        target = "z" if objective == "squared_error" else "y"
        raw = {
            "name": objective,
            "data": {"train": train_csv, "target": target, "features": ["a", "b"]},
            "layers": layers,
            "objective": objective,
            "training": {"epochs": 2},
        }
        (folder / f"{objective}.yaml").write_text(yaml.safe_dump(raw))
        train(load_config(folder / f"{objective}.yaml"), out=folder / objective)
        runs.append(load_run(folder / objective))
    return runs


@FUZZ
@given(nearly_valid_csvs() | csv_contents)
def test_eval_and_predict_random_csv(trained_runs: list[Any], text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "held.csv", text)
        frame = _allowed(read_csv, path, "CSV")
        if frame is None:
            return
        for run in trained_runs:
            result = _allowed(run.evaluate, frame, str(path))
            if result is not None:
                event(f"evaluated {run.encoding.objective}")
                assert result["n_samples"] == len(frame)
            predictions = _allowed(run.predict, frame, str(path))
            if predictions is not None:
                assert len(predictions) == len(frame)


@FUZZ
@given(st.text(max_size=40) | st.sampled_from(["", ".", "..", "/", "a\x00b", "x" * 300, "~/x.csv", "train.csv/"]))
def test_prepare_random_data_paths(name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        _write(folder, "train.csv", "a,b,y\n1,2,0.5\n2,3,1.5\n")
        raw = copy.deepcopy(SMALL) | {"layers": STACKS["values"]}
        raw["data"]["train"] = name
        path = _write(folder, "fuzz.yaml", yaml.safe_dump(raw))
        config = _allowed(load_config, path)
        if config is not None:
            _allowed(set_up, config)


@FUZZ
@given(csv_contents, st.sampled_from([["y"], ["y", "z"], ["a"]]), st.sampled_from([1, 2, 5]))
def test_chunked_loading_matches_a_whole_file_read(text: str, targets: list[str], chunk_rows: int) -> None:
    """Whatever a whole-file read accepts, reading in chunks (into memory, or into the cache and back) gives the
    same feature matrix and target columns; anything else is a DataError, never a crash."""
    from nnctl.data import feature_matrix, resolve_features
    from nnctl.loading import load_file

    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "data.csv", text)
        frame = _allowed(read_csv, path, "data.train")
        features = (
            _allowed(resolve_features, [str(c) for c in frame.columns], str(path), targets, None)
            if frame is not None
            else None
        )
        whole = _allowed(feature_matrix, frame, features, str(path), np.float32) if features is not None else None
        for cache in (None, Path(folder) / "cache"):
            loaded = _allowed(load_file, path, targets, None, np.float32, "data.train", cache, chunk_rows)
            if whole is None or loaded is None:
                assert whole is None or loaded is not None, "the whole file loads, its chunks do not"
                continue
            event("loaded")
            np.testing.assert_array_equal(loaded.X, whole)
            expected = frame[targets].reset_index(drop=True)
            for name in targets:
                if loaded.targets[name].dtype.kind in "iufb" and expected[name].dtype.kind in "iufb":
                    np.testing.assert_array_equal(loaded.targets[name].to_numpy(), expected[name].to_numpy())
                else:
                    assert loaded.targets[name].astype(str).tolist() == expected[name].astype(str).tolist()
