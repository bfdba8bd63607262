"""`nnctl sweep` (SPEC §7): trial order, validation, trials as real runs, failures, Ctrl-C and --resume, and
both backends — the local process pool and a real local Ray instance — with the same numbers.

Signals and kills go to real subprocesses; Ray is the real thing (the `ray` extra is in the test extra).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import (
    array_bytes,
    checkpoint_state,
    epochs_done,
    nnctl_process,
    run_cli,
    toy_config,
    toy_layers,
    wait_for,
    write_csv,
)
from hypothesis import given
from hypothesis import strategies as st

from nnctl.sweepconfig import SweepConfig, trials, yaml_text
from nnctl.yamlfile import parse_yaml

GRID = {
    "seeds": [0, 1],
    "parameters": {"optimizer.learning_rate": [0.05, 0.01], "layers.1.fully_connected.units": [4, 8]},
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory, with train.csv / valid.csv and `grid.yaml` (8 quick trials)."""
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "train.csv", 120, seed=1)
    write_csv(tmp_path / "valid.csv", 40, seed=2)
    write_config(tmp_path / "grid.yaml", toy_config(sweep=GRID))
    return tmp_path


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """The config in the key order written here: a grid's first key varies slowest."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_trials(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "trials.csv", newline="") as file:
        return list(csv.DictReader(file))


def without_seconds(sweep: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_trials(sweep)]


def assert_same_sweep(a: Path, b: Path) -> None:
    """trials.csv equal but for `seconds`, and every trial's model.npz equal bit for bit."""
    assert without_seconds(a) == without_seconds(b)
    for row in read_trials(a):
        if (a / row["run"] / "model.npz").exists():
            assert array_bytes(a / row["run"]) == array_bytes(b / row["run"]), row["trial"]


# ----------------------------------------------------------------------------- trial order


def test_grid_trials_take_the_product_first_key_slowest_seeds_innermost() -> None:
    sweep = SweepConfig.model_validate({"parameters": {"a": [1, 2], "b.c": ["x", "y", "z"]}, "seeds": [7, 3]})
    got = [(t.number, t.params["a"], t.params["b.c"], t.seed) for t in trials(sweep, seed=0)]
    expected = [(a, b, s) for a in (1, 2) for b in ("x", "y", "z") for s in (7, 3)]
    assert got == [(n, *row) for n, row in enumerate(expected, 1)]
    assert [t.point for t in trials(sweep, 0)] == [p for p in range(6) for _ in (7, 3)]


def test_random_trials_are_drawn_key_by_key_from_the_configs_seed() -> None:
    spec = {
        "method": "random",
        "trials": 3,
        "parameters": {
            "lr": {"log_uniform": [1e-4, 1e-1]},
            "units": {"int_uniform": [4, 6]},
            "momentum": {"uniform": [0.5, 0.9]},
            "act": ["relu", "tanh"],
        },
    }
    sweep = SweepConfig.model_validate(spec)
    rng = np.random.default_rng(42)  # the documented rule, written out
    expected = []
    for _ in range(3):
        lr = math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))
        units = int(rng.integers(4, 6, endpoint=True))
        momentum = rng.uniform(0.5, 0.9)
        act = ["relu", "tanh"][int(rng.integers(2))]
        expected.append({"lr": lr, "units": units, "momentum": momentum, "act": act})
    got = trials(sweep, seed=42)
    assert [t.params for t in got] == expected
    assert all(1e-4 <= t.params["lr"] < 1e-1 and 4 <= t.params["units"] <= 6 for t in got)
    assert [t.params for t in trials(sweep, seed=43)] != expected  # the config's seed moves the draws
    assert [t.seed for t in got] == [42, 42, 42]  # default seeds: the config's own


@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(),
        st.booleans(),
        st.none(),
        st.text(max_size=20),
        st.lists(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)), max_size=4),
    )
)
def test_a_value_written_for_set_reads_back_exactly(value: Any) -> None:
    back = parse_yaml(yaml_text(value))
    assert back == value and type(back) is type(value)


# ----------------------------------------------------------------------------- validation before anything trains


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            {"parameters": {"optimizer.learnig_rate": [0.1]}},
            "sweep.parameters.optimizer.learnig_rate: unknown key (did you mean 'learning_rate'?)",
        ),
        ({"parameters": {"optimizer.learning_rate": []}}, "parameters.optimizer.learning_rate: expected at least one"),
        (
            {"parameters": {"optimizer.learning_rate": {"log_uniform": [1e-4, 1]}}},
            "a distribution (log_uniform) needs method: random",
        ),
        ({"method": "random", "parameters": {"seed": [1]}}, "sweep.trials: required with method: random"),
        (
            {"method": "random", "trials": 2, "parameters": {"optimizer.learning_rate": {"loguniform": [1, 2]}}},
            "sweep.parameters.optimizer.learning_rate.loguniform: unknown key (did you mean 'log_uniform'?)",
        ),
        (
            {"parameters": {"layers.1.fully_connected.units": [8, 0]}},
            "sweep trial 2 (layers.1.fully_connected.units=0, seed 0): layers[1].fully_connected.units: "
            "expected a positive integer, got 0",
        ),
        (
            {"parameters": {"layers.3.fully_connected.units": [2, 5]}},
            "sweep trial 2 (layers.3.fully_connected.units=5, seed 0): layers[3].fully_connected.units: "
            "the network ends with 5 outputs, expected 2",
        ),
        ({"metric": "val_loss"}, "sweep.metric: 'val_loss' is not a column of history.csv (did you mean"),
        ({"parameters": {"seed": [1, 2]}}, "sweep.parameters.seed: cannot be swept: use sweep.seeds"),
        (
            {"parameters": {"layers[9].fully_connected.units": [4]}},
            "bad.yaml: sweep.parameters.layers[9].fully_connected.units: layers.9: expected an index from 0 to 4\n",
        ),
    ],
    ids=["unknown-key", "empty-list", "distribution-in-grid", "random-without-trials", "bad-distribution",
         "bad-point", "network-vs-data", "metric", "seed", "no-such-layer"],
)  # fmt: skip
def test_a_bad_sweep_exits_2_naming_the_key_and_trains_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], sweep: dict[str, Any], message: str
) -> None:
    write_config(project / "bad.yaml", toy_config(sweep=sweep))
    code, out, err = run_cli(capsys, "sweep", "bad.yaml")
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (project / "runs").exists()  # no sweep directory, no trial


def test_a_config_without_a_sweep_section_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(project / "plain.yaml", toy_config())
    code, _, err = run_cli(capsys, "sweep", "plain.yaml")
    assert code == 2 and "plain.yaml: has no sweep: section" in err


# ----------------------------------------------------------------------------- trials are real runs


def test_a_sweep_writes_its_directory_and_ranks_the_points(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "sweep", "grid.yaml", "--workers", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    sweep = project / "runs" / "grid-sweep"
    assert result["sweep"] == str(Path("runs") / "grid-sweep")
    files = [".nnctl.lock", ".source.yaml", "sweep.yaml", "trials", "trials.csv"]
    assert sorted(p.name for p in sweep.iterdir()) == files
    rows = read_trials(sweep)
    lr, units = "optimizer.learning_rate", "layers.1.fully_connected.units"
    assert list(rows[0]) == [
        "trial", "status", "seed", lr, units, "epochs", "best_epoch", "train_loss", "validation_loss",
        "train_accuracy", "validation_accuracy", "seconds", "run", "error",
    ]  # fmt: skip
    order = [(rate, u, s) for rate in ("0.05", "0.01") for u in ("4", "8") for s in "01"]
    assert [(r["trial"], r[lr], r[units], r["seed"]) for r in rows] == [(str(n), *t) for n, t in enumerate(order, 1)]
    assert {r["status"] for r in rows} == {"finished"} and rows[0]["run"] == "trials/0001"
    resolved = yaml.safe_load((sweep / "sweep.yaml").read_text())["sweep"]
    assert resolved["metric"] == "validation_loss" and resolved["goal"] == "minimize" and resolved["seeds"] == [0, 1]
    # the ranking is by the mean over seeds; "best" is the best point's best seed
    means = {}
    for row in rows:
        means.setdefault((row["optimizer.learning_rate"], row["layers.1.fully_connected.units"]), []).append(row)
    best_point = min(means.values(), key=lambda rs: np.mean([float(r["validation_loss"]) for r in rs]))
    best_row = min(best_point, key=lambda r: float(r["validation_loss"]))
    assert result["best"]["trial"] == int(best_row["trial"]) and result["best"]["run"] == best_row["run"]
    assert result["best"]["validation_loss"] == float(best_row["validation_loss"])
    values = [float(r["validation_loss"]) for r in best_point]
    assert result["best"]["validation_loss_mean"] == pytest.approx(np.mean(values))
    assert result["best"]["validation_loss_std"] == pytest.approx(np.std(values, ddof=1))
    assert len(result["trials"]) == 8 and result["trials"][0]["status"] == "finished"


def test_the_view_names_swept_keys_as_nnctl_runs_heads_them(project: Path) -> None:
    """Shortest unique endings that are neither a bare layer index nor a key of the config itself, either
    spelling of a layer; a swept value in the ranked table as --set writes it (`false`)."""
    from rich.console import Console

    from nnctl.sweep import plan_sweep, ranking
    from nnctl.sweeprun import SweepResult
    from nnctl.sweepview import param_names, results_table

    keys = ["layers.1.fully_connected.units", "layers[3].fully_connected.units", "optimizer.name"]
    parameters = dict.fromkeys(keys, [4]) | {"layers[3].fully_connected.units": [2], "optimizer.name": ["adam"]}
    parameters |= {"optimizer.learning_rate": [0.01], "training.shuffle": [False]}
    write_config(project / "names.yaml", toy_config(sweep={"parameters": parameters}))
    plan = plan_sweep(Path("names.yaml"), [])
    assert param_names(plan) == {
        "layers.1.fully_connected.units": "layers.1.fully_connected.units",
        "layers[3].fully_connected.units": "layers.3.fully_connected.units",
        "optimizer.name": "optimizer.name",  # `name` is the config's own
        "optimizer.learning_rate": "learning_rate",
        "training.shuffle": "shuffle",
    }
    row = {"status": "finished", "seed": 0, "validation_loss": 0.25, "run": "trials/0001"}
    console = Console(width=300, file=io.StringIO(), color_system=None)
    console.print(results_table(SweepResult(plan, project / "s", {1: row}, ranking(plan, {1: row}))))
    assert re.search(r"│ 1 │ +4 │ +2 │ +adam │ +0.01 │ +false │ +0.25 │ +1 │", console.file.getvalue())


@pytest.mark.parametrize("finished, shown", [(1, "0.25 (1 seed)"), (2, "0.300 ± 0.071 (2 seeds)")])
def test_a_point_missing_seeds_says_how_many_it_has(project: Path, finished: int, shown: str) -> None:
    from rich.console import Console

    from nnctl.sweep import plan_sweep, ranking
    from nnctl.sweeprun import SweepResult
    from nnctl.sweepview import results_table

    sweep = {"parameters": {"optimizer.learning_rate": [0.01]}, "seeds": [0, 1, 2]}
    write_config(project / "seeds.yaml", toy_config(sweep=sweep))
    plan = plan_sweep(Path("seeds.yaml"), [])
    rows = {
        n: {"status": "finished", "seed": n - 1, "validation_loss": loss, "run": f"trials/{n:04d}"}
        for n, loss in zip(range(1, finished + 1), (0.25, 0.35), strict=False)
    }
    console = Console(width=300, file=io.StringIO(), color_system=None)
    console.print(results_table(SweepResult(plan, project / "s", rows, ranking(plan, rows))))
    assert re.search(rf"│ +0.01 │ +{re.escape(shown)} │", console.file.getvalue())


def test_every_trial_is_bit_identical_to_nnctl_train_with_its_settings(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "sweep", "grid.yaml", "--workers", "2", "-q")
    assert code == 0, err
    sweep = project / "runs" / "grid-sweep"
    for row in read_trials(sweep)[5:7]:  # learning rate 0.01, 4 units, seed 1; and 8 units, seed 0
        sets = [f"optimizer.learning_rate={row['optimizer.learning_rate']}", f"seed={row['seed']}"]
        sets.append(f"layers.1.fully_connected.units={row['layers.1.fully_connected.units']}")
        args = ["train", "grid.yaml", *[a for s in sets for a in ("--set", s)], "--threads", "1", "--out", "alone"]
        assert run_cli(capsys, *args, "--force", "-q")[0] == 0
        assert array_bytes(project / "alone") == array_bytes(sweep / row["run"])
    trial = sweep / "trials" / "0006"
    code, out, _ = run_cli(capsys, "eval", trial, "valid.csv", "--json")  # a trial is a complete run
    assert code == 0 and json.loads(out)["n_samples"] == 40
    assert run_cli(capsys, "predict", trial, "valid.csv")[0] == 0


def test_the_trials_with_the_most_work_start_first(project: Path) -> None:
    """Wider networks (more weights) start first, equals in trial order, so the last trials to run are short."""
    from nnctl.sweep import dispatch_order, plan_sweep

    plan = plan_sweep(Path("grid.yaml"), [])
    assert [t.number for t in dispatch_order(plan, plan.trials)] == [3, 4, 7, 8, 1, 2, 5, 6]
    longer = plan_sweep(Path("grid.yaml"), ["training.epochs=50"])
    assert longer.costs[0] == 10 * plan.costs[0]  # work scales with the epochs


def test_the_data_are_read_once_and_the_local_backend_keeps_no_copy_of_them(project: Path) -> None:
    """Validation reads each distinct data once and records each point's data_key; the local backend's workers
    read their own, so the sweep process lets go of its copy."""
    from nnctl.sweep import plan_sweep
    from nnctl.sweeppool import LocalBackend
    from nnctl.sweeprun import run_sweep

    plan = plan_sweep(Path("grid.yaml"), [])
    assert sorted(plan.data_keys) == [0, 1, 2, 3] and len(set(plan.data_keys.values())) == 1
    assert list(plan.data.loaded) == [plan.data_keys[0]]
    result = run_sweep(plan, LocalBackend(workers=2, threads=1), out=project / "s")
    assert result.exit_code == 0 and not plan.data.loaded


def test_nnctl_train_on_a_sweep_config_trains_the_base_config(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "train", "grid.yaml", "--out", "base", "-q")[0] == 0
    assert yaml.safe_load((project / "base" / "config.yaml").read_text())["optimizer"]["learning_rate"] == 0.05


def test_a_diverging_trial_is_recorded_and_the_others_go_on(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(project / "reg.csv", 80, seed=3, task="regression")
    regression = {
        "data": {"train": "reg.csv", "target": "y", "validation_split": 0.25},
        "layers": ["input", {"fully_connected": {"units": 4}}, "relu", {"fully_connected": {"units": 1}}],
        "objective": "squared_error",
        "optimizer": {"name": "sgd"},
        "training": {"epochs": 4, "batch_size": 16},
    }
    write_config(project / "div.yaml", regression | {"sweep": {"parameters": {"optimizer.learning_rate": [0.01, 1e6]}}})
    code, _, err = run_cli(capsys, "sweep", "div.yaml", "--workers", "2")
    assert code == 0, err
    rows = read_trials(project / "runs" / "div-sweep")
    assert [r["status"] for r in rows] == ["finished", "diverged"]
    assert "training diverged" in rows[1]["error"] and rows[0]["error"] == ""
    write_config(project / "all.yaml", regression | {"sweep": {"parameters": {"optimizer.learning_rate": [1e6, 1e7]}}})
    code, out, _ = run_cli(capsys, "sweep", "all.yaml")
    assert code == 1 and "no trial finished" in out  # exit 1: none finished


def test_a_trial_that_fails_records_its_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The data file disappears after the sweep was validated: each trial fails with the reason, exit 1."""
    from nnctl.sweep import plan_sweep
    from nnctl.sweeppool import LocalBackend
    from nnctl.sweeprun import run_sweep

    plan = plan_sweep(Path("grid.yaml"), [])
    os.remove(project / "train.csv")
    result = run_sweep(plan, LocalBackend(workers=2, threads=1), out=project / "gone")
    assert result.exit_code == 1
    rows = read_trials(project / "gone")
    assert {r["status"] for r in rows} == {"failed"} and "train.csv" in rows[0]["error"]


def elsewhere(project: Path) -> Path:
    """`configs/elsewhere.yaml`: a sweep of 2 trials whose data files (data/, test data too) are named relative to
    the config's folder, not to the working directory."""
    (project / "data").mkdir()
    for name in ("train.csv", "valid.csv"):
        os.replace(project / name, project / "data" / name)
    write_csv(project / "data" / "test.csv", 30, seed=4)
    (project / "configs").mkdir()
    data = {
        "train": "../data/train.csv",
        "validation": "../data/valid.csv",
        "test": "../data/test.csv",
        "target": "label",
    }
    sweep = {"parameters": {"optimizer.learning_rate": [0.05, 0.01]}}
    return write_config(project / "configs" / "elsewhere.yaml", toy_config(data=data, sweep=sweep))


def assert_trials_name_the_data(sweep: Path, project: Path) -> None:
    """Every trial finished and scored data.test; its config.yaml (relative to the trial), sweep.yaml and
    .source.yaml (relative to the sweep) name the data files."""
    from nnctl.config import load_config

    data = project / "data"
    for row in read_trials(sweep):
        assert row["status"] == "finished", row
        run = sweep / row["run"]
        loaded = load_config(run / "config.yaml").data
        assert (loaded.train, loaded.validation, loaded.test) == tuple(
            (data / name).resolve() for name in ("train.csv", "valid.csv", "test.csv")
        )
        assert yaml.safe_load((run / "config.yaml").read_text())["data"]["test"] == os.path.relpath(
            data / "test.csv", run.resolve()
        )
        assert json.loads((run / "test_metrics.json").read_text())["n_samples"] == 30
    for name in ("sweep.yaml", ".source.yaml"):
        assert yaml.safe_load((sweep / name).read_text())["data"]["test"] == os.path.relpath(
            data / "test.csv", sweep.resolve()
        )


def test_a_sweep_takes_every_data_path_relative_to_its_config(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = elsewhere(project)
    code, _, err = run_cli(capsys, "sweep", config, "--out", "s", "--workers", "2", "-q")
    assert code == 0, err
    assert_trials_name_the_data(project / "s", project)
    assert run_cli(capsys, "sweep", "--resume", "s", "-q")[0] == 0  # the sweep's own copy resolves too
    assert run_cli(capsys, "sweep", config, "--resume", "s", "-q")[0] == 0  # and equals the config


def test_sweep_directories_are_numbered_and_never_replaced_without_force(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = toy_config(sweep={"parameters": {"optimizer.learning_rate": [0.05]}})
    write_config(project / "one.yaml", small)
    assert run_cli(capsys, "sweep", "one.yaml", "-q")[0] == 0
    assert run_cli(capsys, "sweep", "one.yaml", "-q")[0] == 0
    assert (project / "runs" / "one-sweep-2" / "trials.csv").exists()
    code, _, err = run_cli(capsys, "sweep", "one.yaml", "--out", "runs/one-sweep", "-q")
    assert code == 2 and "a sweep already exists here; pass --force" in err
    before = (project / "runs" / "one-sweep" / "trials.csv").read_text()
    assert run_cli(capsys, "sweep", "one.yaml", "--out", "runs/one-sweep", "--force", "-q")[0] == 0
    assert (project / "runs" / "one-sweep" / "trials.csv").read_text() != before  # seconds differ: a new sweep


def test_resume_refuses_a_different_config(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(project / "one.yaml", toy_config(sweep={"parameters": {"optimizer.learning_rate": [0.05]}}))
    assert run_cli(capsys, "sweep", "one.yaml", "--out", "s", "-q")[0] == 0
    code, _, err = run_cli(capsys, "sweep", "one.yaml", "--resume", "s", "--set", "training.epochs=9")
    assert code == 2 and "the configs differ in training.epochs" in err
    assert run_cli(capsys, "sweep", "--resume", "s", "-q")[0] == 0  # nothing left to do


def test_train_threads_limits_blas(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnctl.threads import blas_threads, threads_in_use

    with blas_threads(1):
        assert threads_in_use() == 1
    code, _, err = run_cli(capsys, "train", "grid.yaml", "--threads", "0")
    assert code == 2 and "--threads" in err


# ----------------------------------------------------------------------------- signals and kills (subprocesses)


@pytest.fixture
def slow(project: Path) -> Path:
    """`slow.yaml`: 4 trials of a second or two each (2,000 rows, batch 4, 90 epochs: long enough that a stop
    requested once the first epoch is saved finds trials running)."""
    write_csv(project / "big.csv", 2000, seed=3, noise=1.0)
    data = {"train": "big.csv", "validation": "valid.csv", "target": "label"}
    sweep = {"parameters": {"optimizer.learning_rate": [0.01, 0.003], "layers.1.fully_connected.units": [16, 32]}}
    config = toy_config(data=data, layers=toy_layers(hidden=16), training={"epochs": 90, "batch_size": 4}, sweep=sweep)
    write_config(project / "slow.yaml", config)
    return project / "slow.yaml"


def nnctl(*args: Any, cwd: Path) -> subprocess.Popen[str]:
    """`nnctl ARGS` in its own session (so a test can Ctrl-C its process group, as a terminal does)."""
    return nnctl_process(*args, cwd=cwd, start_new_session=True)


def unlocked(lock: Path) -> bool:
    """Nobody holds this run directory's lock (its trial has stopped and saved)."""
    with open(lock, "a") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
    return True


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_a_stopped_sweep_resumes_exactly(
    project: Path, slow: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    """Ctrl-C (the whole process group, as a terminal sends it) saves every running trial and prints the resume
    command; SIGKILL of the sweep process alone leaves its workers to stop and save their trials by themselves.
    Either way --resume ends as an uninterrupted sweep: trials.csv but `seconds`, every model.npz."""
    cut = project / "cut"
    child = nnctl("sweep", slow, "--out", cut, "--workers", "2", cwd=project)
    wait_for(lambda: any(epochs_done(run) >= 1 for run in cut.glob("trials/*")) or child.poll() is not None)
    if how == "ctrl-c":
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=90)
        assert child.returncode == 130, err
        assert "Traceback" not in err and f"resume with: nnctl sweep --resume {cut}" in err
        statuses = [row["status"] for row in read_trials(cut)]
        assert "interrupted" in statuses and set(statuses) <= {"finished", "interrupted", "pending"}
    else:
        child.kill()
        child.communicate(timeout=90)
        wait_for(lambda: all(unlocked(lock) for lock in cut.glob("trials/*/.nnctl.lock")))
    stopped = [run for run in sorted(cut.glob("trials/*")) if checkpoint_state(run)["stop_reason"] == "interrupted"]
    assert stopped, "a running trial stops after its batch and saves its checkpoint"
    assert run_cli(capsys, "sweep", "--resume", cut, "-q")[0] == 0
    assert run_cli(capsys, "sweep", slow, "--out", project / "whole", "--workers", "2", "-q")[0] == 0
    assert_same_sweep(project / "whole", cut)


def test_a_killed_worker_fails_its_trial_and_the_sweep_goes_on(project: Path, slow: Path) -> None:
    sweep = {"parameters": {"training.epochs": [2, 100000, 2, 2]}}
    write_config(project / "kill.yaml", {**yaml.safe_load(slow.read_text()), "sweep": sweep})
    out = project / "k"
    child = nnctl("sweep", "kill.yaml", "--out", out, "--workers", "2", cwd=project)
    lock = out / "trials" / "0002" / ".nnctl.lock"
    wait_for(lambda: epochs_done(lock.parent) >= 1 or child.poll() is not None)
    pid = int(re.search(r"pid (\d+)", lock.read_text()).group(1))  # the worker holding trial 2
    os.kill(pid, signal.SIGKILL)
    _, err = child.communicate(timeout=90)
    assert child.returncode == 0, err
    rows = read_trials(out)
    assert [r["status"] for r in rows] == ["finished", "failed", "finished", "finished"]
    assert rows[1]["error"] == "the worker process running this trial was killed by SIGKILL (out of memory?)"


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def worker_cpu(child: subprocess.Popen[str]) -> tuple[int, int]:
    """CPU ticks of the sweep's worker processes until it ends: (their main threads, all their other threads)."""
    ticks: dict[tuple[int, int], int] = {}
    while child.poll() is None:
        for pid in [w for server in _children(child.pid) for w in _children(server)]:  # nnctl → fork server → workers
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in map(int, tids):
                try:
                    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks[(pid, tid)] = max(ticks.get((pid, tid), 0), int(fields[11]) + int(fields[12]))
        time.sleep(0.01)
    main = sum(t for (pid, tid), t in ticks.items() if pid == tid)
    return main, sum(ticks.values()) - main


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads threads from /proc (Linux)")
def test_workers_never_run_more_blas_threads_than_there_are_cores(project: Path) -> None:
    """With one worker per core, each trial has 1 BLAS thread: the workers' other threads stay idle. The same
    measure shows 2 threads per worker when asked for (the check can fail)."""
    from nnctl.threads import available_cores

    root = Path(__file__).resolve().parent.parent
    data = {"train": str(root / "data" / "digits_train.csv"), "validation_split": 0.2, "target": "digit"}
    layers = ["input", {"fully_connected": {"units": 512}}, "relu", {"fully_connected": {"units": 10}}, "softmax"]
    sweep = {"parameters": {"optimizer.learning_rate": [0.01, 0.02]}}
    # long enough that BLAS work, not start-up (imports, reading the data in pandas' threads), dominates the ticks
    wide = toy_config(data=data, layers=layers, training={"epochs": 40, "batch_size": 1024}, sweep=sweep)
    write_config(project / "wide.yaml", wide)
    cores = str(available_cores())
    main, other = worker_cpu(nnctl("sweep", "wide.yaml", "--out", "a", "--workers", cores, "-q", cwd=project))
    assert main > 0 and other < 0.35 * main, (main, other)
    shorter = ("--set", "training.epochs=10", "--threads", "2")
    main, other = worker_cpu(nnctl("sweep", "wide.yaml", "--out", "b", "--workers", cores, *shorter, cwd=project))
    assert other > 0.5 * main, (main, other)


# ----------------------------------------------------------------------------- Ray, for real


def test_ray_without_ray_installed_names_the_extra(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed: `import ray` fails
    code, _, err = run_cli(capsys, "sweep", "grid.yaml", "--backend", "ray")
    assert code == 2 and 'pip install "nnctl[ray]"' in err
    assert not (project / "runs").exists()


def test_ray_at_an_address_nothing_answers_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "sweep", "grid.yaml", "--backend", "ray", "--address", "127.0.0.1:1")
    assert code == 2 and "nothing answers at 127.0.0.1:1" in err
    assert not (project / "runs").exists()


def test_ray_ctrl_c_and_resume_match_the_local_backend(
    project: Path, slow: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """nnctl starts its own Ray (no address); Ctrl-C brings the running trials' checkpoints back and cancels the
    others; the sweep is then finished on another Ray instance, and equals a local sweep."""
    config = yaml.safe_load(slow.read_text()) | {"sweep": {"parameters": {"training.epochs": [1, 400, 2, 2]}}}
    write_config(project / "uneven.yaml", config)
    cut = project / "ray-cut"
    child = nnctl("sweep", "uneven.yaml", "--out", cut, "--backend", "ray", cwd=project)
    assert child.stdout is not None
    for line in child.stdout:  # trial 2 (about 5 s) starts first; trial 1 (1 epoch) ends while it trains
        if line.startswith("trial 1/4 finished"):
            break
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert f"resume with: nnctl sweep --resume {cut} --backend ray" in err
    statuses = [row["status"] for row in read_trials(cut)]
    assert statuses[0] == "finished" and "interrupted" in statuses, statuses
    assert (cut / "trials" / "0002" / "checkpoint" / "checkpoint.npz").exists()  # brought back from the task
    assert run_cli(capsys, "sweep", "uneven.yaml", "--out", project / "local", "--workers", "2", "-q")[0] == 0
    ray_session()  # the module's own Ray instance starts only now
    assert run_cli(capsys, "sweep", "--resume", cut, "--backend", "ray", "-q")[0] == 0
    assert_same_sweep(project / "local", cut)


def test_ray_trials_equal_local_trials(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ray_session()
    code, out, err = run_cli(capsys, "sweep", "grid.yaml", "--backend", "ray", "--out", "ray", "--json")
    assert code == 0, err
    assert json.loads(out)["best"] is not None
    assert run_cli(capsys, "sweep", "grid.yaml", "--workers", "2", "--out", "local", "-q")[0] == 0
    assert_same_sweep(project / "local", project / "ray")
    assert not (project / "ray" / "trials" / "0001" / ".nnctl.lock").exists()  # written by the driver


def test_ray_trial_configs_name_the_data_relative_to_the_sweep(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trial trains in a temporary directory on its node; its config.yaml, written back into the sweep, names
    the data (the test data too) relative to the trial's run directory there."""
    ray_session()
    config = elsewhere(project)
    code, _, err = run_cli(capsys, "sweep", config, "--backend", "ray", "--out", "s", "-q")
    assert code == 0, err
    assert_trials_name_the_data(project / "s", project)


_RAY: list[Any] = []


def ray_session() -> Any:
    """This module's Ray instance, started on first use (after any test that lets nnctl start its own)."""
    import logging

    import ray

    if not _RAY:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        _RAY.append(ray)
    return ray


def teardown_module() -> None:
    for ray in _RAY:
        ray.shutdown()


def test_a_late_progress_message_does_not_bring_an_ended_trial_back(project: Path) -> None:
    """Progress and outcomes come by different pipes: an epoch message that arrives after its trial's outcome
    must not put the trial back in the running table."""
    from rich.console import Console

    from nnctl.sweep import plan_sweep
    from nnctl.sweepview import SweepView

    write_config(project / "late.yaml", toy_config(sweep={"parameters": {"optimizer.learning_rate": [0.01]}}))
    plan = plan_sweep(Path("late.yaml"), [])
    trial = plan.trials[0]
    view = SweepView(Console(file=io.StringIO(), width=60), quiet=True)
    view.plan = plan
    view.on_trial_progress(trial, "epoch", {"epoch": 1, "epochs": 2})
    assert trial.number in view.running
    view.on_trial_end(trial, {"status": "finished", "seed": 0, "run": "trials/0001"})
    view.on_trial_progress(trial, "epoch", {"epoch": 1, "epochs": 2})
    assert view.running == {}
