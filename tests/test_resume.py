"""Ctrl-C and `--resume` (SPEC §4): an interrupted run, resumed, ends bit for bit where an uninterrupted one does.

The library tests interrupt with a real SIGINT sent from a progress callback (the path Ctrl-C takes);
one test interrupts the `nnctl` console script itself and runs the resume command it prints.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    SigintAfter,
    assert_same_run,
    checkpoint_state,
    console_script,
    model_arrays,
    toy_config,
    toy_layers,
    write_config,
    write_csv,
)

import nnctl.experiment
from nnctl.cli import main
from nnctl.config import load_config
from nnctl.experiment import train


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """Noisy labels, 44 training rows in batches of 8 (6 batches, the last one short), a net wide enough to overfit."""
    write_csv(tmp_path / "train.csv", 44, seed=1, noise=1.5)
    write_csv(tmp_path / "valid.csv", 40, seed=2, noise=1.5)
    config = toy_config(seed=3, layers=toy_layers(hidden=16), training={"epochs": 8, "batch_size": 8, "shuffle": True})
    return write_config(tmp_path / "toy.yaml", config)


BATCHES = 6  # per epoch with the fixture's data


# ----------------------------------------------------------------------------- library: exact resume

DROPOUT_LAYERS = (
    "[input, {fully_connected: {units: 16}}, tanh, {dropout: {rate: 0.4}}, {fully_connected: {units: 2}}, softmax]"
)
CASES = {
    "adam": [],
    "momentum": ["optimizer.name=momentum", "optimizer.learning_rate=0.02"],
    "early-stopping": ["training.early_stopping.patience=2", "training.epochs=30"],
    "momentum-early-stopping": ["optimizer.name=momentum", "training.early_stopping.patience=2", "training.epochs=30"],
    "no-shuffle-float32": ["training.shuffle=false", "dtype=float32"],
    "regression-weight-decay": [
        "objective=squared_error",
        "layers.4=linear",
        "layers.3.fully_connected.units=1",
        "data.target=y",
        "optimizer.weight_decay=0.01",
        "optimizer.learning_rate=0.01",
    ],
    "dropout": [f"layers={DROPOUT_LAYERS}"],
    "dropout-float32-no-shuffle": [f"layers={DROPOUT_LAYERS}", "dtype=float32", "training.shuffle=false"],
    "step": ["optimizer.schedule={name: step, step_size: 2, gamma: 0.5}"],
    "exponential": ["optimizer.schedule={name: exponential, gamma: 0.7}"],
    "cosine": ["optimizer.schedule={name: cosine, t_max: 3, min_lr: 0.001}"],
    "plateau": ["optimizer.schedule={name: plateau, patience: 0, factor: 0.5, cooldown: 1}"],
    "clip": ["optimizer.clip_norm=0.3"],
    "huber-momentum-dropout-cosine-clip": [
        f"layers={DROPOUT_LAYERS}",
        "objective={huber: {delta: 0.5}}",
        "layers.5=linear",
        "layers.4.fully_connected.units=1",
        "data.target=y",
        "optimizer.name=momentum",
        "optimizer.schedule={name: cosine, t_max: 5}",
        "optimizer.clip_norm=1",
    ],
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stop_after", [BATCHES + 3, 2 * BATCHES], ids=["mid-epoch", "epoch-boundary"])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(cfg: Path, case: str, stop_after: int) -> None:
    overrides = CASES[case]
    if "data.target=y" in overrides:
        write_csv(cfg.parent / "train.csv", 44, seed=1, noise=0.5, task="regression")
        write_csv(cfg.parent / "valid.csv", 40, seed=2, noise=0.5, task="regression")
    whole = train(load_config(cfg, overrides), out=cfg.parent / "whole")
    if "early" in case:  # the rule must fire after the interruption, so the resumed run has to carry its state
        assert whole.status == "early_stopping" and whole.epoch > stop_after // BATCHES

    handler = signal.getsignal(signal.SIGINT)
    cut = train(
        load_config(cfg, overrides), out=cfg.parent / "cut", callback=SigintAfter(stop_after), handle_signals=True
    )
    assert cut.status == "interrupted"
    assert (cut.epoch, cut.batch) == divmod(stop_after, BATCHES)
    state = checkpoint_state(cut.path)
    assert (state["epoch"], state["batch"], state["stop_reason"]) == (*divmod(stop_after, BATCHES), "interrupted")
    assert state["optimizer_step"] == stop_after
    assert signal.getsignal(signal.SIGINT) is handler  # nnctl's handler is gone again

    resumed = train(load_config(cfg, overrides), resume=cut.path)
    assert resumed.status == whole.status
    assert_same_run(whole.path, resumed.path)
    rates = [row["learning_rate"] for row in whole.history]
    if "schedule" in " ".join(overrides):  # the rate still changes after the interruption, so the state mattered
        assert len(set(rates[stop_after // BATCHES :])) > 1, rates
    if "clip_norm" in " ".join(overrides):
        assert all(row["grad_norm"] > 0 for row in whole.history)


def test_a_run_interrupted_twice_still_matches(cfg: Path) -> None:
    whole = train(load_config(cfg), out=cfg.parent / "whole")
    cut = train(load_config(cfg), out=cfg.parent / "cut", callback=SigintAfter(4), handle_signals=True)
    again = train(load_config(cfg), resume=cut.path, callback=SigintAfter(2 * BATCHES + 1), handle_signals=True)
    assert again.status == "interrupted" and (again.epoch, again.batch) == (2, 5)
    train(load_config(cfg), resume=cut.path)
    assert_same_run(whole.path, cut.path)


def test_periodic_checkpoints_do_not_change_the_result(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = train(load_config(cfg), out=cfg.parent / "quiet")
    monkeypatch.setattr(nnctl.experiment, "SAVE_EVERY_SECONDS", -1.0)  # save after every epoch
    busy = train(load_config(cfg), out=cfg.parent / "busy")
    assert_same_run(quiet.path, busy.path)


def test_raising_epochs_continues_a_finished_run(cfg: Path) -> None:
    whole = train(load_config(cfg, ["training.epochs=12"]), out=cfg.parent / "whole")
    short = train(load_config(cfg, ["training.epochs=5"]), out=cfg.parent / "short")
    assert short.status == "epochs"
    longer = train(load_config(cfg, ["training.epochs=12"]), resume=short.path)
    assert longer.epoch == 12
    assert_same_run(whole.path, longer.path)
    assert yaml.safe_load((longer.path / "config.yaml").read_text())["training"]["epochs"] == 12


# ----------------------------------------------------------------------------- CLI: what may and may not be resumed


def test_resume_with_a_different_config_names_the_keys(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(cfg.parent / "run")
    assert main(["train", str(cfg), "--out", run, "--quiet"]) == 0
    before = model_arrays(Path(run))
    capsys.readouterr()
    overrides = ["--set", "optimizer.learning_rate=0.5", "--set", "layers.1.fully_connected.units=4"]
    assert main(["train", str(cfg), "--resume", run, *overrides, "--set", "training.epochs=20"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.learning_rate" in err and "layers[1].fully_connected.units" in err
    assert "training.epochs" in err  # the remedy: the only key that may change
    assert all(np.array_equal(before[k], a) for k, a in model_arrays(Path(run)).items())


def test_resume_with_more_epochs_through_the_cli(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, run = str(cfg.parent / "whole"), str(cfg.parent / "run")
    assert main(["train", str(cfg), "--out", whole, "--quiet", "--set", "training.epochs=11"]) == 0
    assert main(["train", str(cfg), "--out", run, "--quiet", "--set", "training.epochs=4"]) == 0
    assert main(["train", str(cfg), "--resume", run, "--set", "training.epochs=11"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == [
        f"{e}/11" for e in range(5, 12)
    ]
    assert_same_run(Path(whole), Path(run))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "nothing to resume: the run finished after 8 epoch(s)"),
        (["training.epochs=3"], "nothing to resume: the run finished after 8 epoch(s)"),
    ],
)
def test_a_finished_run_has_nothing_to_resume(
    cfg: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], message: str
) -> None:
    run = str(cfg.parent / "run")
    assert main(["train", str(cfg), "--out", run, "--quiet"]) == 0
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["train", str(cfg), "--resume", run, *sets]) == 2
    err = capsys.readouterr().err
    assert message in err and "training.epochs" in err


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["training.early_stopping.patience=1", "training.epochs=40"], "early_stopping"),
        (["training.tolerance=100", "training.epochs=40"], "tolerance"),
    ],
)
def test_a_run_stopped_by_its_own_rule_is_not_resumed(
    cfg: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], reason: str
) -> None:
    run = cfg.parent / "run"
    result = train(load_config(cfg, overrides), out=run)
    assert result.status == reason and result.epoch < 40
    assert (
        main(
            [
                "train",
                str(cfg),
                "--resume",
                str(run),
                *[a for o in overrides for a in ("--set", o)],
                "--set",
                "training.epochs=80",
            ]
        )
        == 2
    )
    assert f"nothing to resume: the run stopped after {result.epoch} epoch(s) by {reason}" in capsys.readouterr().err


def test_resume_with_fewer_epochs_than_done_is_refused(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = train(load_config(cfg), out=cfg.parent / "cut", callback=SigintAfter(2 * BATCHES + 2), handle_signals=True)
    assert (cut.epoch, cut.batch) == (2, 2)
    assert main(["train", str(cfg), "--resume", str(cut.path), "--set", "training.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "training.epochs" in err and "inside epoch 3" in err and "at least 3" in err
    assert checkpoint_state(cut.path)["stop_reason"] == "interrupted"


def test_resume_needs_a_run_directory(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cfg.parent / "empty").mkdir()
    assert main(["train", str(cfg), "--resume", str(cfg.parent / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_a_diverged_run_is_not_resumed(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(cfg.parent / "run")
    sets = [
        "--set",
        "objective=squared_error",
        "--set",
        "layers.4=linear",
        "--set",
        "data.target=y",
        "--set",
        "layers.3.fully_connected.units=1",
        "--set",
        "optimizer.name=sgd",
        "--set",
        "optimizer.learning_rate=1e6",
    ]
    write_csv(cfg.parent / "train.csv", 44, seed=1, noise=0.5, task="regression")
    write_csv(cfg.parent / "valid.csv", 40, seed=2, noise=0.5, task="regression")
    assert main(["train", str(cfg), "--out", run, "--quiet", *sets]) == 1
    assert main(["train", str(cfg), "--resume", run, *sets, "--set", "training.epochs=50"]) == 2
    assert "diverged" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Ctrl-C through the CLI


@pytest.fixture
def ctrl_c_at(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`ctrl_c_at(n)`: the CLI's own progress display sends SIGINT after its n-th batch."""

    def arm(batches: int) -> None:
        from nnctl.render import TrainingDisplay

        sender = SigintAfter(batches)
        monkeypatch.setattr(TrainingDisplay, "on_batch_end", lambda self, *args: sender.on_batch_end(*args))

    return arm


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(
    cfg: Path, capsys: pytest.CaptureFixture[str], ctrl_c_at: Any
) -> None:
    run = cfg.parent / "run"
    ctrl_c_at(BATCHES + 2)
    assert main(["train", str(cfg), "--out", str(run), "--set", "training.epochs=9"]) == 130
    out, err = capsys.readouterr()
    assert [line.split()[1] for line in out.splitlines()] == ["1/9"]  # the finished epoch; no summary table
    assert err.splitlines() == [
        f"interrupted in epoch 2 after batch 2; checkpoint saved in {run}",
        f"resume with: nnctl train --resume {run}",  # the run's config.yaml holds the overrides
    ]
    assert sorted(p.name for p in run.iterdir()) == [
        ".nnctl.lock",
        "checkpoint",
        "config.yaml",
        "history.csv",
        "model.json",
        "model.npz",
    ]
    assert json.loads((run / "model.json").read_text())["status"] == "interrupted"
    assert len(pd.read_csv(run / "history.csv")) == 1

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    whole = train(load_config(cfg, ["training.epochs=9"]), out=cfg.parent / "whole")
    assert_same_run(whole.path, run)


def test_the_printed_resume_command_survives_spaces_in_paths(
    cfg: Path, capsys: pytest.CaptureFixture[str], ctrl_c_at: Any
) -> None:
    run = cfg.parent / "my run"
    ctrl_c_at(3)
    assert main(["train", str(cfg), "--out", str(run), "--set", "optimizer.learning_rate=0.02", "--quiet"]) == 130
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("resume with: ")]
    words = shlex.split(line[len("resume with: ") :])
    assert words == ["nnctl", "train", "--resume", str(run)]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"]["learning_rate"] == 0.02  # the override travels with the run


# ------------------------------------------------------------- the real thing: Ctrl-C on the console script


REGULARISED = [  # dropout masks, a schedule whose state matters (plateau) and clipping
    f"layers={DROPOUT_LAYERS}",
    "optimizer.schedule={name: plateau, patience: 0, factor: 0.9}",
    "optimizer.clip_norm=0.5",
]


@pytest.mark.parametrize("extra", [[], REGULARISED], ids=["plain", "dropout-plateau-clip"])
def test_ctrl_c_on_the_console_script_then_the_printed_resume_command(cfg: Path, extra: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    run = cfg.parent / "interrupted"
    # Far more epochs than can finish: the pipe fills after a few hundred unread lines and blocks the child.
    sets = [a for o in extra for a in ("--set", o)]
    command = [*console_script(), "train", str(cfg), "--out", str(run), *sets, "--set", "training.epochs=100000"]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cfg.parent
    )
    try:
        first = child.stdout.readline()
        assert first.startswith("epoch 1/100000  loss "), first + child.stderr.read()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    state = checkpoint_state(run)
    assert state["stop_reason"] == "interrupted" and state["epoch"] >= 1
    where = (
        f"in epoch {state['epoch'] + 1} after batch {state['batch']}"
        if state["batch"]
        else f"after epoch {state['epoch']}"
    )
    assert f"interrupted {where}; checkpoint saved in" in err
    (line,) = [line for line in err.splitlines() if "--resume" in line]  # one line, never wrapped
    printed = shlex.split(line.split("resume with:", 1)[1])
    assert printed == ["nnctl", "train", "--resume", str(run)]  # no CONFIG: the run's own config.yaml

    # Run that command, with fewer epochs so it ends soon (epochs may change on resume) ...
    epochs = state["epoch"] + 3
    done = subprocess.run(
        [*console_script(), *printed[1:], "--set", f"training.epochs={epochs}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cfg.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "\x1b[" not in done.stdout and "\r" not in done.stdout
    shown = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert shown == [f"{e}/{epochs}" for e in range(state["epoch"] + 1, epochs + 1)]  # it continues, not restarts
    # ... and compare with a run that was never interrupted.
    whole = train(load_config(cfg, [*extra, f"training.epochs={epochs}"]), out=cfg.parent / "whole")
    assert_same_run(whole.path, run)
