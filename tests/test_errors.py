"""Bad input through the CLI: exit 2 and a short message naming file, key or column, row, what was found
and what was expected (SPEC §2) — never a traceback, never anything on stdout.

Each case builds its own tiny config and CSVs in tmp_path; the run-directory cases copy one trained run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from nnctl.cli import main

TRAIN = "a,b,y\n1,2,x\n2,3,y\n3,1,x\n4,4,z\n5,1,y\n6,2,z\n"
BINARY = "a,b,y\n1,2,0\n2,3,1\n3,1,0\n4,4,1\n"
CONFIG = """\
data: {train: train.csv, target: y}
layers:
  - input
  - fully_connected: {units: 4}
  - relu
  - fully_connected: {units: 3}
  - softmax
objective: cross_entropy
optimizer: {name: sgd, learning_rate: 0.1}
training: {epochs: 2, batch_size: 2}
"""


def assert_error(result: tuple[int, str, str], *words: str, code: int = 2) -> str:
    """A user error: the exit code, nothing on stdout, one to a few lines on stderr holding every word."""
    exit_code, out, err = result
    assert exit_code == code, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    assert 1 <= len(err.strip().splitlines()) <= 4, err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    return err


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "binary.csv").write_text(BINARY)
    return tmp_path


def config(work: Path, *replacements: tuple[str, str], text: str = CONFIG, name: str = "c.yaml") -> Path:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = work / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the config file


def test_yaml_that_does_not_parse_names_file_and_line(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, text="data:\n  train: train.csv\n  target: [y\nlayers: x\n")
    assert_error(run_cli(capsys, "summary", path), str(path), "invalid YAML", "line 4")


@pytest.mark.parametrize(
    ("text", "got"), [("- 1\n- 2\n", "got a list"), ("just text\n", "got a str"), ("", "got empty")]
)
def test_yaml_that_is_not_a_mapping(work: Path, capsys: pytest.CaptureFixture[str], text: str, got: str) -> None:
    path = config(work, text=text)
    assert_error(run_cli(capsys, "summary", path), str(path), "expected a mapping of config keys", got)


def test_missing_config_file(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(run_cli(capsys, "train", work / "nope.yaml"), "nope.yaml", "config file not found")


def test_config_that_is_not_utf8(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = work / "c.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert_error(run_cli(capsys, "summary", path), str(path), "not UTF-8")


def test_unknown_key_suggests_the_right_one(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("learning_rate", "learnig_rate"))
    assert_error(
        run_cli(capsys, "train", path),
        str(path),
        "optimizer.learnig_rate: unknown key",
        "did you mean 'learning_rate'?",
    )


def test_unknown_key_without_a_close_match_lists_the_valid_keys(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("training: {", "training: {zzz: 1, "))
    assert_error(run_cli(capsys, "summary", path), "training.zzz: unknown key", "valid keys: epochs, batch_size")


def test_unknown_layer_option(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("{units: 4}", "{units: 4, unit: 3}"))
    assert_error(run_cli(capsys, "summary", path), "layers[1].fully_connected.unit: unknown key", "'units'")


def test_option_on_a_layer_that_takes_none(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("- relu", "- relu: {alpha: 0.1}"))
    assert_error(run_cli(capsys, "summary", path), "layers[2].relu.alpha: unknown key; relu takes no options")


def test_several_problems_are_listed_together(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("learning_rate: 0.1", "learning_rate: -1"), ("epochs: 2", "epochs: 0"))
    err = assert_error(run_cli(capsys, "summary", path), str(path), "2 problems")
    assert "optimizer.learning_rate: expected a positive number, got -1" in err
    assert "training.epochs: expected a positive integer, got 0" in err


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("epochs: 2", "epochs: many", ["training.epochs: expected an integer, got 'many'"]),
        ("epochs: 2", "epochs: 2.5", ["training.epochs: expected an integer, got 2.5"]),
        ("units: 4", "units: true", ["layers[1].fully_connected.units: expected an integer, got True"]),
        ("units: 4", "units: '4'", ["layers[1].fully_connected.units: expected an integer, got '4'"]),
        ("learning_rate: 0.1", "learning_rate: fast", ["optimizer.learning_rate: expected a number, got 'fast'"]),
        ("learning_rate: 0.1", "learning_rate: .inf", ["optimizer.learning_rate: expected a finite number, got inf"]),
        ("batch_size: 2", "batch_size: [2]", ["training.batch_size: expected an integer, got [2]"]),
        ("batch_size: 2", "shuffle: 3", ["training.shuffle: expected true or false, got 3"]),
        (
            "name: sgd",
            "name: rmsprop",
            ["optimizer.name: unknown optimizer 'rmsprop'; expected one of: sgd, momentum, adam"],
        ),
        ("target: y", "target: {col: y}", ["data.target: expected a string or a list, got {'col': 'y'}"]),
        ("- relu", "- [relu]", ["layers[2]: expected a name or a one-key mapping, got ['relu']"]),
        ("{units: 4}", "{units: 4, init: zeros}", ["layers[1].fully_connected.init: expected one of", "got 'zeros'"]),
    ],
)
def test_wrong_type(work: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, words: list[str]) -> None:
    path = config(work, (old, new))
    assert_error(run_cli(capsys, "summary", path), str(path), *words)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("learning_rate: 0.1", "learning_rate: -0.1", "optimizer.learning_rate: expected a positive number, got -0.1"),
        ("learning_rate: 0.1", "learning_rate: 0", "optimizer.learning_rate: expected a positive number, got 0"),
        ("epochs: 2", "epochs: 0", "training.epochs: expected a positive integer, got 0"),
        ("epochs: 2", "epochs: -5", "training.epochs: expected a positive integer, got -5"),
        ("units: 4", "units: 0", "layers[1].fully_connected.units: expected a positive integer, got 0"),
        ("units: 3", "units: -3", "layers[3].fully_connected.units: expected a positive integer, got -3"),
        ("batch_size: 2", "batch_size: 0", "training.batch_size: expected a positive integer, got 0"),
        ("batch_size: 2", "batch_size: -1", "training.batch_size: expected a positive integer, got -1"),
    ],
)
def test_zero_or_negative(work: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str) -> None:
    path = config(work, (old, new))
    assert_error(run_cli(capsys, "train", path), f"error: {path}: {message}")
    assert not (work / "runs").exists()  # nothing was trained or written


def test_yaml_12_floats_are_numbers(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Strict types must not reject `1e-3`, which PyYAML alone (YAML 1.1) reads as a string."""
    path = config(work, ("learning_rate: 0.1", "learning_rate: 1e-3, weight_decay: 5E-4"))
    code, out, err = run_cli(capsys, "summary", path, "--set", "epsilon=1e-8")
    assert code == 0, err


@pytest.mark.parametrize(
    "replace, words",
    [
        (
            ("- relu", "- rellu"),
            [
                "layers[2]: unknown layer 'rellu'",
                "did you mean 'relu'?",
                "expected one of: input, fully_connected, linear, relu, logistic, sigmoid, tanh, softmax",
            ],
        ),
        (
            ("objective: cross_entropy", "objective: crossentropy"),
            [
                "objective: unknown objective 'crossentropy'",
                "did you mean 'cross_entropy'?",
                "expected one of: squared_error, log_loss, cross_entropy",
            ],
        ),
    ],
    ids=["layer", "objective"],
)
def test_unknown_name_lists_the_valid_names(
    work: Path, capsys: pytest.CaptureFixture[str], replace: tuple[str, str], words: list[str]
) -> None:
    path = config(work, replace)
    assert_error(run_cli(capsys, "summary", path), str(path), *words)


def test_last_width_does_not_match_the_classes(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("units: 3", "units: 2"))
    assert_error(run_cli(capsys, "train", path), str(path), "layers[3].fully_connected.units", "2 outputs", "3")


def test_last_width_does_not_match_the_targets(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "reg.csv").write_text("a,b,y,z\n1,2,0.5,1\n2,3,1.5,2\n3,1,2.5,3\n")
    path = config(
        work,
        ("train.csv, target: y", "reg.csv, target: [y, z]"),
        ("objective: cross_entropy", "objective: squared_error"),
        ("  - softmax\n", ""),
    )
    assert_error(run_cli(capsys, "summary", path), str(path), "layers[3].fully_connected.units", "3 outputs", "2")


def test_softmax_with_log_loss_over_one_column(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(
        work, ("train.csv", "binary.csv"), ("units: 3", "units: 1"), ("objective: cross_entropy", "objective: log_loss")
    )
    assert_error(
        run_cli(capsys, "train", path),
        str(path),
        "objective: log_loss needs probabilities in (0, 1)",
        "layers[4] is 'softmax'",
        "always outputs 1",
        "end the stack with logistic",
    )


def test_cross_entropy_over_several_columns(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("target: y", "target: [y, b], features: [a]"))
    assert_error(
        run_cli(capsys, "summary", path), str(path), "data.target: cross_entropy takes one column", "['y', 'b']"
    )


def test_log_loss_target_with_three_classes(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(
        work, ("units: 3", "units: 1"), ("softmax", "logistic"), ("objective: cross_entropy", "objective: log_loss")
    )
    assert_error(
        run_cli(capsys, "train", path),
        "data.target: log_loss needs two classes in column 'y'",
        str(work / "train.csv"),
        "found 3 classes: 'x', 'y', 'z'",
        "use cross_entropy",
    )


def test_early_stopping_without_validation(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("batch_size: 2", "batch_size: 2, early_stopping: {patience: 3}"))
    assert_error(run_cli(capsys, "summary", path), str(path), "training.early_stopping: needs validation data")


# ----------------------------------------------------------------------------- --set


def test_set_unknown_key(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work)
    assert_error(
        run_cli(capsys, "train", path, "--set", "training.epochz=3"),
        str(path),
        "training.epochz: unknown key (from --set)",
        "did you mean 'epochs'?",
    )


def test_set_below_a_value_that_is_not_a_mapping(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work)
    assert_error(
        run_cli(capsys, "summary", path, "--set", "data.target.x=1"), str(path), "data.target is not a mapping"
    )
    assert_error(run_cli(capsys, "summary", path, "--set", "seed.x=1"), "seed: expected an integer", "(from --set)")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("optimizer.weight_decay", "-1", "optimizer.weight_decay: expected a number ≥ 0, got -1"),  # a float key
        ("training.epochs", "-1", "training.epochs: expected a positive integer, got -1"),  # an integer key
        ("optimizer.schedule", "{name: plateau, cooldown: -2}", "optimizer.schedule.cooldown: expected a non-negative"),
        (
            "optimizer.schedule",
            "{name: plateau, min_lr: -2}",
            "optimizer.schedule.min_lr: expected a number ≥ 0, got -2",
        ),
    ],
)
def test_a_bound_is_worded_for_the_keys_type(
    work: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, expected: str
) -> None:
    assert_error(run_cli(capsys, "summary", config(work), "--set", f"{key}={value}"), expected, "(from --set)")


def test_set_objective_option_without_the_objective_name(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work)  # objective: cross_entropy, a bare name
    assert_error(
        run_cli(capsys, "summary", path, "--set", "objective.x=1"),
        "--set 'objective.x=1'",
        "the objective is 'cross_entropy'",
        "objective.cross_entropy.x=VALUE",
    )
    code, _, err = run_cli(capsys, "summary", path, "--set", "objective.cross_entropy.x=1")
    assert code == 2 and "objective.cross_entropy.x: unknown key" in err and "takes no options" in err


def test_set_layer_option_without_the_layer_name(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work)
    assert_error(
        run_cli(capsys, "summary", path, "--set", "layers.1.units=8"),
        "--set 'layers.1.units=8'",
        "layers[1] is a 'fully_connected' layer",
        "layers.1.fully_connected.units=VALUE",
    )


def test_set_layer_index_out_of_range(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work)
    assert_error(
        run_cli(capsys, "summary", path, "--set", "layers.9.fully_connected.units=1"),
        str(path),
        "layers.9: expected an index from 0 to 4",
    )


def test_set_value_of_the_wrong_type_or_without_equals(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work)
    assert_error(
        run_cli(capsys, "summary", path, "--set", "optimizer.learning_rate=-1"),
        "optimizer.learning_rate: expected a positive number, got -1 (from --set)",
    )
    assert_error(run_cli(capsys, "summary", path, "--set", "epochs"), "--set 'epochs': expected KEY=VALUE")


def test_set_accepts_the_key_as_messages_print_it(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`layers[3].fully_connected.units` (as errors name it) is the same key as `layers.3.fully_connected.units`."""
    path = config(work)
    assert_error(
        run_cli(capsys, "summary", path, "--set", "layers[3].fully_connected.units=0"),
        "layers[3].fully_connected.units: expected a positive integer, got 0 (from --set)",
    )


# ----------------------------------------------------------------------------- CSV data


def test_missing_csv(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("train.csv", "nope.csv"))
    assert_error(run_cli(capsys, "train", path), "data.train: file not found", str(work / "nope.csv"))


def test_csv_path_that_cannot_be_a_file(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("train.csv", '"a\\0b.csv"'))
    assert_error(run_cli(capsys, "summary", path), str(path), "data.train: expected a file path", "null byte")
    path = config(work, ("train.csv", "x" * 300 + ".csv"))
    assert_error(run_cli(capsys, "summary", path), "data.train: cannot open", "too long")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ["is empty; expected a header line and at least one row"]),
        ("a,b,y\n", ["has a header but no rows"]),
        ("a,a,y\n1,2,x\n", ["has a repeated column name: 'a'"]),
        ("a,b,y\n1,2,x\n2,3,y,7,8\n", [", line 3: expected 3 fields like the header, got 5"]),
        ('a,b,y\n1,"2,x\n', ["is not a valid CSV", "EOF inside string"]),
    ],
    ids=["empty", "header-only", "repeated-header", "ragged-row", "open-quote"],
)
def test_unusable_csv_file(work: Path, capsys: pytest.CaptureFixture[str], content: str, words: list[str]) -> None:
    (work / "bad.csv").write_text(content)
    path = config(work, ("train.csv", "bad.csv"))
    assert_error(run_cli(capsys, "train", path), "data.train:", str(work / "bad.csv"), *words)


def test_csv_that_is_not_utf8(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "bad.csv").write_bytes(b"a,b,y\n1,\xff\xfe,x\n")
    path = config(work, ("train.csv", "bad.csv"))
    assert_error(run_cli(capsys, "summary", path), "data.train:", str(work / "bad.csv"), "not UTF-8")


def test_a_real_column_named_like_a_renamed_duplicate_is_fine(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "dots.csv").write_text("a,a.1,y\n1,2,x\n2,3,y\n3,1,z\n")
    code, _, err = run_cli(capsys, "summary", config(work, ("train.csv", "dots.csv")))
    assert code == 0, err


def test_missing_target_column(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("target: y", "target: label"))
    assert_error(
        run_cli(capsys, "train", path),
        "data.target: column(s) 'label' not found in",
        str(work / "train.csv"),
        "a, b, y",
    )


def test_csv_separated_by_semicolons(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "semi.csv").write_text("a;b;y\n1;2;x\n")
    path = config(work, ("train.csv", "semi.csv"))
    assert_error(run_cli(capsys, "summary", path), "data.target: column(s) 'y' not found", "separated by ';'")


def test_missing_feature_column(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(work, ("target: y", "target: y, features: [a, c]"))
    assert_error(
        run_cli(capsys, "train", path), "data.features: column(s) 'c' not found in", str(work / "train.csv"), "a, b, y"
    )


@pytest.mark.parametrize(
    ("cell", "got"),
    [("NaN", "got a missing value"), ("", "got a missing value"), ("four", "got 'four'"), ("inf", "got inf")],
    ids=["nan", "empty", "text", "inf"],
)
def test_bad_feature_value_names_column_and_first_row(
    work: Path, capsys: pytest.CaptureFixture[str], cell: str, got: str
) -> None:
    (work / "bad.csv").write_text(f"a,b,y\n1,2,x\n2,3,y\n3,{cell},x\n4,{cell},z\n")
    path = config(work, ("train.csv", "bad.csv"))
    err = assert_error(run_cli(capsys, "train", path), f"{work / 'bad.csv'}: column 'b', row 3 (line 4): expected ")
    assert got in err


def test_feature_value_too_large_for_float32(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "big.csv").write_text("a,b,y\n1,2,x\n2,1e39,y\n3,1,z\n")
    path = config(work, ("train.csv", "big.csv"), text=CONFIG + "dtype: float32\n")
    assert_error(
        run_cli(capsys, "summary", path),
        f"{work / 'big.csv'}: column 'b', row 2 (line 3): expected a number within float32 range",
        "got 1e+39",
    )


def test_missing_class_label(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "bad.csv").write_text("a,b,y\n1,2,x\n2,3,\n3,1,z\n")
    path = config(work, ("train.csv", "bad.csv"))
    assert_error(
        run_cli(capsys, "summary", path), f"{work / 'bad.csv'}: column 'y', row 2 (line 3): missing class label"
    )


def test_validation_csv_with_an_unseen_class(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "valid.csv").write_text("a,b,y\n1,2,x\n2,3,w\n")
    path = config(work, ("target: y", "target: y, validation: valid.csv"))
    assert_error(
        run_cli(capsys, "train", path),
        f"{work / 'valid.csv'}: column 'y', row 2 (line 3): label 'w'",
        "is not one of the model's 3 classes: 'x', 'y', 'z'",
    )


# ----------------------------------------------------------------------------- eval, predict and run directories


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("trained")
    (work / "train.csv").write_text(TRAIN)
    (work / "c.yaml").write_text(CONFIG)
    assert main(["train", str(work / "c.yaml"), "--out", str(work / "run"), "--quiet"]) == 0
    return work / "run"


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run, to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_eval_csv_missing_a_feature_column(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "held.csv").write_text("a,y\n1,x\n")
    for command in ("eval", "predict"):
        assert_error(
            run_cli(capsys, command, run, tmp_path / "held.csv"),
            "the model's features: column(s) 'b' not found in",
            str(tmp_path / "held.csv"),
            "it has: a, y",
        )


def test_eval_csv_missing_the_target_column(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "held.csv").write_text("a,b\n1,2\n")
    assert_error(run_cli(capsys, "eval", run, tmp_path / "held.csv"), "the model's target: column(s) 'y' not found")


def test_eval_labels_the_model_never_saw(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "held.csv").write_text("a,b,y\n1,2,x\n2,3,w\n")
    assert_error(
        run_cli(capsys, "eval", run, tmp_path / "held.csv", "--json"),
        f"{tmp_path / 'held.csv'}: column 'y', row 2 (line 3): label 'w'",
        "is not one of the model's 3 classes: 'x', 'y', 'z'",
    )


def test_eval_non_numeric_feature(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "held.csv").write_text("a,b,y\n1,2,x\n2,?,y\n")
    assert_error(
        run_cli(capsys, "predict", run, tmp_path / "held.csv"),
        f"{tmp_path / 'held.csv'}: column 'b', row 2 (line 3): expected a number, got '?'",
    )


def test_eval_missing_csv_or_run(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_error(run_cli(capsys, "eval", run, tmp_path / "nope.csv"), "DATA: file not found", "nope.csv")
    assert_error(run_cli(capsys, "eval", tmp_path / "norun", tmp_path / "nope.csv"), "norun: run directory not found")


def test_run_directory_missing_model_json(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "model.json").unlink()
    (tmp_path / "held.csv").write_text(TRAIN)
    assert_error(
        run_cli(capsys, "eval", run, tmp_path / "held.csv"),
        f"{run}: not a complete run directory: model.json is missing",
    )


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda doc: "{not json", ["model.json: corrupted JSON"]),
        (lambda doc: doc | {"layers": "relu"}, ["model.json: malformed model description: layers: expected a list"]),
        (
            lambda doc: doc | {"layers": [5]},
            ["model.json: malformed model description: layers[0]: expected a name or a one-key mapping, got 5"],
        ),
        (
            lambda doc: {k: v for k, v in doc.items() if k != "dtype"},
            ["model.json: malformed model description: dtype: required key is missing"],
        ),
        (
            lambda doc: doc | {"objective": "hinge"},
            ["model.json: malformed model description: objective: unknown objective 'hinge'"],
        ),
    ],
    ids=["not-json", "layers-not-a-list", "layer-not-a-name", "no-dtype", "unknown-objective"],
)
def test_malformed_model_json(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable, words: list[str]
) -> None:
    doc = damage(json.loads((run / "model.json").read_text()))
    (run / "model.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    (tmp_path / "held.csv").write_text(TRAIN)
    assert_error(run_cli(capsys, "eval", run, tmp_path / "held.csv"), str(run), *words)


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: data[:100], lambda data: b"garbage" * 50, lambda data: b""],
    ids=["half", "first-100-bytes", "garbage", "empty"],
)
def test_truncated_or_corrupted_model_npz(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[bytes], bytes]
) -> None:
    (run / "model.npz").write_bytes(damage((run / "model.npz").read_bytes()))
    (tmp_path / "held.csv").write_text(TRAIN)
    assert_error(run_cli(capsys, "predict", run, tmp_path / "held.csv"), f"{run / 'model.npz'}: truncated or corrupted")


def test_model_npz_with_a_damaged_member(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray((run / "model.npz").read_bytes())
    start = data.index(b"\x93NUMPY")  # the first member's array header: flip bytes inside it
    data[start + 20 : start + 40] = b"\x00" * 20
    (run / "model.npz").write_bytes(bytes(data))
    (tmp_path / "held.csv").write_text(TRAIN)
    assert_error(run_cli(capsys, "eval", run, tmp_path / "held.csv"), str(run / "model.npz"), "corrupted")


class _Marker:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_pickled_object_array_is_refused_and_never_unpickled(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "unpickled"
    with np.load(run / "model.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["1.W"] = np.array([_Marker(marker)], dtype=object)
    np.savez(run / "model.npz", allow_pickle=True, **arrays)
    (tmp_path / "held.csv").write_text(TRAIN)

    for command in ("eval", "predict"):
        assert_error(
            run_cli(capsys, command, run, tmp_path / "held.csv"),
            f"{run / 'model.npz'}: holds a pickled object array; refused",
        )
    assert not marker.exists()

    # the marker does work: loading with pickle allowed creates it (so the assertion above can fail)
    with np.load(run / "model.npz", allow_pickle=True) as npz:
        npz["1.W"]
    assert marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a | {"1.W": np.zeros((7, 7))}, "array '1.W' has shape (7, 7), but model.json describes (2, 4)"),
        (lambda a: a | {"3.b": np.zeros((3,))}, "array '3.b' has shape (3,), but model.json describes (1, 3)"),
        (lambda a: {k: v for k, v in a.items() if k != "3.b"}, "array '3.b' is missing"),
        (lambda a: a | {"1.W": a["1.W"].astype(np.int64)}, "array '1.W' has dtype int64, expected floating point"),
    ],
    ids=["wrong-shape", "wrong-rank", "missing-array", "integer-array"],
)
def test_arrays_that_disagree_with_model_json(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Callable, message: str
) -> None:
    with np.load(run / "model.npz") as npz:
        arrays = change({name: npz[name] for name in npz.files})
    np.savez(run / "model.npz", **arrays)
    (tmp_path / "held.csv").write_text(TRAIN)
    assert_error(run_cli(capsys, "eval", run, tmp_path / "held.csv"), f"{run / 'model.npz'}: {message}")


# ----------------------------------------------------------------------------- internal errors and --debug


def test_internal_error_says_so_and_points_to_debug(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pd, "read_csv", boom)
    path = config(work)

    code, out, err = run_cli(capsys, "summary", path)
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    assert "internal error: RuntimeError: disk on fire" in err
    assert "--debug" in err and "bug in nnctl" in err

    code, out, err = run_cli(capsys, "summary", path, "--debug")
    assert (code, out) == (1, "")
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: disk on fire" in err


def test_usage_error_exits_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "train")
    assert (code, out) == (2, "")
    assert "Traceback" not in err and "give a CONFIG to train, or --resume RUN to continue a run" in err


# ----------------------------------------------------------------------------- as a real process


def _nnctl(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_subprocess_bad_yaml_and_unknown_key(work: Path) -> None:
    config(work, text="data: {train: train.csv\n", name="broken.yaml")
    done = _nnctl("train", "broken.yaml", cwd=work)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: broken.yaml: invalid YAML (line 2")
    assert "Traceback" not in done.stderr

    config(work, ("learning_rate", "learnig_rate"), name="typo.yaml")
    done = _nnctl("summary", "typo.yaml", cwd=work)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: typo.yaml: optimizer.learnig_rate: unknown key (did you mean 'learning_rate'?)\n"


def test_subprocess_pickled_model(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    with np.load(run / "model.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["0.mean"] = np.array([_Marker(marker)], dtype=object)
    np.savez(run / "model.npz", allow_pickle=True, **arrays)
    (tmp_path / "held.csv").write_text(TRAIN)
    done = _nnctl("predict", run, "held.csv", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert "holds a pickled object array; refused" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "replace, words",
    [
        (
            ("objective: cross_entropy", "objective: crossentropy"),
            "unknown objective 'crossentropy' (did you mean 'cross_entropy'?)",
        ),
        (("objective: cross_entropy", "objective: mse"), "unknown objective 'mse' (did you mean 'squared_error'?)"),
        (("- relu", "- Relu"), "unknown layer 'Relu' (did you mean 'relu'?)"),
        (
            ("- fully_connected: {units: 4}", "- dense: {units: 4}"),
            "unknown layer 'dense' (did you mean 'fully_connected'?)",
        ),
        (("name: sgd", "name: SGD"), "unknown optimizer 'SGD' (did you mean 'sgd'?)"),
        (("{units: 4}", "{units: 4, init: glorot}"), "got 'glorot' (did you mean 'xavier'?)"),
    ],
    ids=["spelling", "keras-name", "case", "other-library", "optimizer-case", "value"],
)
def test_did_you_mean_for_names_and_values(
    work: Path, capsys: pytest.CaptureFixture[str], replace: tuple[str, str], words: str
) -> None:
    assert_error(run_cli(capsys, "summary", config(work, replace)), words)


def test_every_kind_of_config_mistake_is_reported_in_one_round(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(
        work,
        ("- relu", "- Relu"),
        ("objective: cross_entropy", "objective: crossentropy"),
        ("epochs: 2", "epochs: -1"),
        ("data: {train: train.csv, target: y}", "data: {train: train.csv, target: y, tset: x}"),
    )
    code, out, err = run_cli(capsys, "summary", path)
    assert (code, out) == (2, "") and "4 problems" in err and "Traceback" not in err
    for words in ("layers[2]: unknown layer 'Relu'", "objective: unknown objective", "training.epochs", "data.tset"):
        assert words in err
