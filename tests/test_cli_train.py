"""`nnctl train` end to end (SPEC §2, §4): the run directory, overrides, overwriting, output and exit codes.

Most tests call `nnctl.cli.main([...])`, which returns the exit code; one runs the real console script.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import console_script, model_arrays, toy_config, write_config, write_csv

from nnctl.cli import main
from nnctl.run import load_run

ANSI = re.compile(r"\x1b\[")
EPOCH_LINE = re.compile(
    r"^epoch (\d+)/(\d+)  loss \S+  val_loss \S+  (accuracy|rmse) \S+  val_(accuracy|rmse) \S+  .*samples/s$"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory, with data and two configs: toy.yaml (classes), reg.yaml (regression)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_csv(tmp_path / "data" / "train.csv", 60, seed=1)
    write_csv(tmp_path / "data" / "valid.csv", 40, seed=2)
    write_csv(tmp_path / "data" / "reg.csv", 80, seed=3, task="regression")
    toy = toy_config(data={"train": "data/train.csv", "validation": "data/valid.csv", "target": "label"})
    reg = {
        "data": {"train": "data/reg.csv", "target": "y", "validation_split": 0.25},
        "layers": ["input", {"fully_connected": {"units": 4}}, "relu", {"fully_connected": {"units": 1}}],
        "objective": "squared_error",
        "optimizer": {"name": "momentum", "learning_rate": 0.01},
        "training": {"epochs": 4},
    }
    write_config(tmp_path / "toy.yaml", toy)
    write_config(tmp_path / "reg.yaml", reg)
    return tmp_path


# ----------------------------------------------------------------------------- the run directory


def test_train_writes_the_run_directory(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "toy.yaml", "--set", "training.epochs=3"]) == 0
    run = project / "runs" / "toy"  # OUTPUT/NAME: output defaults to runs, name to the config's stem
    assert sorted(p.name for p in run.iterdir()) == [
        ".nnctl.lock",
        "checkpoint",
        "config.yaml",
        "history.csv",
        "model.json",
        "model.npz",
    ]
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["checkpoint.npz"]

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["epochs"] == 3  # the override
    assert saved["name"] == "toy" and saved["output"] == "runs" and saved["dtype"] == "float64"  # defaults filled in
    assert saved["training"]["shuffle"] is True and saved["optimizer"]["beta2"] == 0.999
    assert saved["layers"][1] == {"fully_connected": {"units": 8, "init": "xavier"}}
    # data paths relative to the run directory, so a run and its data can move together
    assert saved["data"]["train"] == str(Path("..") / ".." / "data" / "train.csv")
    assert (run / saved["data"]["train"]).resolve() == (project / "data" / "train.csv").resolve()

    arrays = model_arrays(run)  # arrays only: allow_pickle=False would refuse anything else
    assert {name: a.shape for name, a in arrays.items()} == {
        "0.mean": (1, 3),
        "0.std": (1, 3),
        "1.W": (3, 8),
        "1.b": (1, 8),
        "3.W": (8, 2),
        "3.b": (1, 2),
    }
    train = pd.read_csv(project / "data" / "train.csv")[["a", "b", "c"]].to_numpy()
    np.testing.assert_allclose(arrays["0.mean"][0], train.mean(axis=0), rtol=1e-12)

    meta = json.loads((run / "model.json").read_text())
    assert meta["nnctl_version"] and meta["objective"] == "cross_entropy" and meta["dtype"] == "float64"
    assert meta["layers"] == saved["layers"]
    assert (meta["features"], meta["targets"], meta["classes"]) == (["a", "b", "c"], ["label"], ["no", "yes"])

    history = pd.read_csv(run / "history.csv")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "validation_loss",
        "train_accuracy",
        "validation_accuracy",
        "learning_rate",
        "grad_norm",
        "seconds",
    ]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert (history["seconds"] > 0).all() and (history["learning_rate"] == 0.05).all()
    assert history["grad_norm"].isna().all()  # measured only with optimizer.clip_norm

    model = load_run(run)  # and the public API rebuilds the same network from it
    assert model.predict(pd.read_csv(project / "data" / "valid.csv"))["prediction"].isin(["no", "yes"]).all()


def test_regression_history_has_rmse_columns(project: Path) -> None:
    assert main(["train", "reg.yaml", "--out", "out/reg-run", "--quiet"]) == 0
    history = pd.read_csv(project / "out" / "reg-run" / "history.csv")
    assert list(history.columns) == [
        "epoch",
        "train_loss",
        "validation_loss",
        "train_rmse",
        "validation_rmse",
        "learning_rate",
        "grad_norm",
        "seconds",
    ]
    assert len(history) == 4
    np.testing.assert_allclose(history["train_rmse"], np.sqrt(history["train_loss"]), rtol=1e-12)  # one target
    assert not (project / "runs").exists()  # --out names the directory exactly


# ----------------------------------------------------------------------------- what the user sees


def test_piped_output_is_one_plain_line_per_epoch_then_a_summary(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "toy.yaml", "--out", "run"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert not ANSI.search(out) and "\r" not in out  # no colours, no progress-bar redraws
    lines = out.splitlines()
    epochs = [m.groups() for m in map(EPOCH_LINE.match, lines[:5]) if m]
    assert [(int(e), int(n)) for e, n, *_ in epochs] == [(i, 5) for i in range(1, 6)], lines[:5]
    assert not any(line.startswith("epoch ") for line in lines[5:])
    summary = out[out.index(lines[5]) :]
    history = pd.read_csv(project / "run" / "history.csv")
    best = int(history["validation_loss"].idxmin()) + 1
    assert re.search(rf"best epoch[\s│|]+{best} \(validation_loss ", summary)
    assert re.search(r"saved to[\s│|]+run\s", summary)


def test_a_long_run_path_is_printed_whole(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = project / ("a-rather-long-directory-name-" * 3) / "run"
    assert main(["train", "toy.yaml", "--out", str(run), "--set", "training.epochs=1"]) == 0
    summary = capsys.readouterr().out.split("saved to", 1)[1]
    assert str(run) in re.sub(r"[│|\s]", "", summary)  # wrapped if it must be, never cut to "…"


def test_quiet_prints_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "toy.yaml", "--out", "run", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert len(pd.read_csv(project / "run" / "history.csv")) == 5


def plain_env() -> dict[str, str]:
    """The environment of a pipe: nothing that would make rich treat it as a terminal."""
    return {
        k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    }


def test_console_script_through_a_pipe(project: Path) -> None:
    done = subprocess.run(
        [*console_script(), "train", "reg.yaml", "--out", str(project / "piped")],
        capture_output=True,
        text=True,
        timeout=60,
        env=plain_env(),
        cwd=project,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert not ANSI.search(done.stdout) and "\r" not in done.stdout
    lines = done.stdout.splitlines()
    assert [int(EPOCH_LINE.match(line).group(1)) for line in lines[:4]] == [1, 2, 3, 4], lines[:4]
    assert "best epoch" in done.stdout and "saved to" in done.stdout
    assert len(pd.read_csv(project / "piped" / "history.csv")) == 4


# ----------------------------------------------------------------------------- overwriting


def test_an_existing_run_is_not_overwritten_without_force(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "toy.yaml", "--out", "run", "--quiet"]) == 0
    before = model_arrays(project / "run")
    capsys.readouterr()

    assert main(["train", "toy.yaml", "--out", "run", "--set", "seed=7"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "run" in err and "already exists" in err and "--force" in err
    assert "Traceback" not in err
    assert all(np.array_equal(before[k], v) for k, v in model_arrays(project / "run").items())

    assert main(["train", "toy.yaml", "--out", "run", "--set", "seed=7", "--force", "--quiet"]) == 0
    after = model_arrays(project / "run")
    assert not np.array_equal(before["1.W"], after["1.W"])
    assert yaml.safe_load((project / "run" / "config.yaml").read_text())["seed"] == 7


def test_default_run_directory_is_numbered_never_replaced(project: Path) -> None:
    assert main(["train", "toy.yaml", "--quiet"]) == 0
    first = (project / "runs" / "toy" / "model.npz").read_bytes()
    assert main(["train", "toy.yaml", "--quiet", "--set", "seed=1"]) == 0
    assert main(["train", "toy.yaml", "--quiet", "--set", "seed=2"]) == 0
    assert (project / "runs" / "toy" / "model.npz").read_bytes() == first
    assert sorted(p.name for p in (project / "runs").iterdir()) == ["toy", "toy-2", "toy-3"]
    assert yaml.safe_load((project / "runs" / "toy-3" / "config.yaml").read_text())["seed"] == 2


def test_out_naming_a_file_is_a_usage_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "taken").write_text("not a run")
    assert main(["train", "toy.yaml", "--out", "taken", "--force"]) == 2
    err = capsys.readouterr().err
    assert "taken" in err and "not a run directory" in err and "internal error" not in err
    assert (project / "taken").read_text() == "not a run"


def test_force_never_replaces_a_directory_that_is_not_a_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "run").mkdir()
    (project / "run" / "notes.txt").write_text("mine")
    (project / "run" / "config.yaml").write_text("mine too")
    assert main(["train", "toy.yaml", "--out", "run", "--force", "--quiet"]) == 2
    assert "not an nnctl run directory (it holds config.yaml, notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in (project / "run").iterdir()) == ["config.yaml", "notes.txt"]
    assert (project / "run" / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- failures


def test_divergence_exits_1_and_keeps_the_last_good_model(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "train",
            "reg.yaml",
            "--out",
            "run",
            "--set",
            "optimizer.name=sgd",
            "--set",
            "optimizer.learning_rate=1e6",
            "--set",
            "training.batch_size=16",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert re.search(r"diverged.*epoch \d+, batch \d+ of \d+", err), err
    assert "smaller optimizer.learning_rate" in err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    model = load_run(project / "run")
    assert all(np.isfinite(a).all() for a in model.network.arrays().values())
    assert json.loads((project / "run" / "model.json").read_text())["status"] == "diverged"


def test_config_errors_exit_2_before_any_run_directory(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "toy.yaml", "--out", "run", "--set", "optimizer.learnig_rate=0.1"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.learnig_rate" in err and "learning_rate" in err
    assert not (project / "run").exists()
