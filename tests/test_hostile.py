"""A hostile user: signals through real subprocesses, kills, concurrent commands, damaged and malicious files.

Every attack must end in a clear message (exit 2, or 130/143 for signals) and an intact file system;
a killed or interrupted run must resume to exactly what an uninterrupted run gives.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    array_bytes,
    assert_same_run,
    checkpoint_state,
    epochs_done,
    nnctl_process,
    run_cli,
    toy_config,
    toy_layers,
    wait_for,
    write_config,
    write_csv,
)

from nnctl.config import load_config
from nnctl.experiment import train

EPOCHS = 120  # about 2 s in a subprocess: long enough that a signal or a kill arrives while it trains


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a slow-enough toy config (`slow.yaml`: EPOCHS epochs of 2,000 rows)."""
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "train.csv", 2000, seed=1, noise=1.0)
    write_csv(tmp_path / "valid.csv", 200, seed=2, noise=1.0)
    config = toy_config(layers=toy_layers(hidden=64), training={"epochs": EPOCHS, "batch_size": 4})
    write_config(tmp_path / "slow.yaml", config)
    return tmp_path


@pytest.fixture
def whole(work: Path) -> Path:
    """The uninterrupted run every interrupted one must end up equal to."""
    return train(load_config(work / "slow.yaml"), out=work / "whole").path


# ----------------------------------------------------------------------------- signals and kills


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_checkpoint_and_resume_is_exact(work: Path, whole: Path, sig: int, code: int) -> None:
    run = work / "cut"
    child = nnctl_process("train", "slow.yaml", "--out", run, cwd=work)
    wait_for(lambda: epochs_done(run) >= 2 or child.poll() is not None)
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code, err
    assert "Traceback" not in err and f"resume with: nnctl train --resume {run}" in err
    assert checkpoint_state(run)["stop_reason"] == "interrupted"
    resumed = subprocess.run([sys.executable, "-m", "nnctl", "train", "--resume", str(run), "-q"], cwd=work)
    assert resumed.returncode == 0
    assert_same_run(whole, run)


def test_sigkill_loses_only_the_work_since_the_last_save(work: Path, whole: Path) -> None:
    run = work / "killed"
    child = nnctl_process("train", "slow.yaml", "--out", run, cwd=work)
    wait_for(lambda: epochs_done(run) >= 3 or child.poll() is not None)
    child.kill()
    child.communicate(timeout=60)
    state = checkpoint_state(run)
    assert state["stop_reason"] is None and state["epoch"] + state["batch"] > 0  # saved while training
    resumed = subprocess.run([sys.executable, "-m", "nnctl", "train", "--resume", str(run), "-q"], cwd=work)
    assert resumed.returncode == 0
    assert_same_run(whole, run)


def test_two_ctrl_c_10_ms_apart_and_a_storm_during_the_save(work: Path, whole: Path) -> None:
    run = work / "storm"
    child = nnctl_process("train", "slow.yaml", "--out", run, cwd=work)
    wait_for(lambda: epochs_done(run) >= 1 or child.poll() is not None)
    child.send_signal(signal.SIGINT)
    time.sleep(0.01)
    child.send_signal(signal.SIGINT)
    while child.poll() is None:  # keep pressing Ctrl-C through the final save
        child.send_signal(signal.SIGINT)
        time.sleep(0.002)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    subprocess.run([sys.executable, "-m", "nnctl", "train", "--resume", str(run), "-q"], cwd=work, check=True)
    assert_same_run(whole, run)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_data_loads_exits_at_once_and_writes_nothing(work: Path, sig: int, code: int) -> None:
    fifo = work / "slow.csv"
    os.mkfifo(fifo)
    write_config(work / "fifo.yaml", toy_config(data={"train": "slow.csv", "target": "label"}))
    child = nnctl_process("train", "fifo.yaml", "--out", work / "never", cwd=work)
    with open(fifo, "w") as writer:  # returns once nnctl has opened the pipe: it is now reading its data
        writer.write("a,b,c,label\n")
        writer.flush()
        child.send_signal(sig)
    # (a read blocked in C code, pandas' parser, sees the signal when it returns: the pipe's end makes it return)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code, err
    assert err.strip() == "interrupted before training started; nothing was written"
    assert not (work / "never").exists()


# ----------------------------------------------------------------------------- concurrency and --force


def test_a_second_command_on_a_run_in_use_exits_2_naming_the_holder(work: Path) -> None:
    run = work / "busy"
    endless = "training.epochs=100000"  # the holder must still be training when the second command runs
    first = nnctl_process("train", "slow.yaml", "--out", run, "--set", endless, cwd=work)
    try:
        wait_for(lambda: epochs_done(run) >= 1 or first.poll() is not None)
        for extra in (["--out", run, "--force"], ["--resume", run]):
            args = ["slow.yaml", *extra] if extra[0] == "--out" else extra
            second = subprocess.run(
                [sys.executable, "-m", "nnctl", "train", *map(str, args)], cwd=work, capture_output=True, text=True
            )
            assert second.returncode == 2, second.stderr
            holder = f"pid {first.pid}: nnctl train slow.yaml --out {run} --set {endless}"
            assert f"{run}: in use by nnctl ({holder})" in second.stderr
        assert first.poll() is None  # untouched
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130


def test_concurrent_default_runs_get_their_own_numbered_directories(work: Path) -> None:
    write_config(work / "quick.yaml", toy_config(training={"epochs": 2}))
    children = [nnctl_process("train", "quick.yaml", "-q", "--set", f"seed={i}", cwd=work) for i in range(3)]
    for child in children:
        child.communicate(timeout=60)
        assert child.returncode == 0
    runs = sorted(p.name for p in (work / "runs").iterdir())
    assert runs == ["quick", "quick-2", "quick-3"]
    seeds = {yaml.safe_load((work / "runs" / r / "config.yaml").read_text())["seed"] for r in runs}
    assert seeds == {0, 1, 2}


@pytest.mark.parametrize("when", ["at-once", "after-the-swap"])
def test_a_killed_force_leaves_the_old_run_or_the_new_one_whole(work: Path, when: str) -> None:
    write_config(work / "quick.yaml", toy_config(training={"epochs": 2}))
    assert run_cli_subprocess(work, "train", "quick.yaml", "--out", "r", "-q") == 0
    old = array_bytes(work / "r")
    child = nnctl_process("train", "slow.yaml", "--out", "r", "--force", cwd=work)

    def swapped() -> bool:
        config = yaml.safe_load((work / "r" / "config.yaml").read_text())
        return config["training"]["epochs"] == EPOCHS and epochs_done(work / "r") >= 1

    if when == "after-the-swap":
        wait_for(lambda: child.poll() is not None or swapped())
    child.kill()
    child.communicate(timeout=60)
    if swapped():  # the new run, resumable to its end
        assert array_bytes(work / "r") != old
        assert run_cli_subprocess(work, "train", "--resume", "r", "-q") == 0
        assert epochs_done(work / "r") == EPOCHS
    else:  # the old run, untouched
        assert when == "at-once" and array_bytes(work / "r") == old
        assert run_cli_subprocess(work, "eval", "r", "valid.csv") == 0
    # a stale staging directory (a kill before the swap) is cleared by the next --force
    assert run_cli_subprocess(work, "train", "quick.yaml", "--out", "r", "--force", "-q") == 0
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


def run_cli_subprocess(cwd: Path, *args: Any) -> int:
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], cwd=cwd, capture_output=True).returncode


# ----------------------------------------------------------------------------- memory bombs


def _limited(megabytes: int) -> Any:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes * 2**20, megabytes * 2**20))

    return limit


def test_a_yaml_alias_bomb_is_refused_under_a_memory_limit(work: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefghi", "bcdefghij", strict=True):
        aliases = ", ".join([f"*{previous}"] * 9)
        lines.append(f"{name}: &{name} [{aliases}]")
    (work / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert (work / "bomb.yaml").stat().st_size < 1000
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "nnctl", "summary", "bomb.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
        preexec_fn=_limited(1024),
        timeout=60,
    )
    assert done.returncode == 2 and time.monotonic() - started < 20
    assert "refused: the YAML expands to more than 100,000 values" in done.stderr
    assert len(done.stderr) < 300


@pytest.fixture
def small_run(work: Path) -> Path:
    write_config(work / "quick.yaml", toy_config(training={"epochs": 2}))
    return train(load_config(work / "quick.yaml"), out=work / "small").path


def test_huge_units_in_model_json_are_refused_before_allocating(small_run: Path, work: Path) -> None:
    meta = json.loads((small_run / "model.json").read_text())
    meta["layers"][1] = {"fully_connected": {"units": 100_000_000}}
    (small_run / "model.json").write_text(json.dumps(meta))
    done = subprocess.run(
        [sys.executable, "-m", "nnctl", "eval", str(small_run), "valid.csv"],
        cwd=work,
        capture_output=True,
        text=True,
        preexec_fn=_limited(1024),
    )
    assert done.returncode == 2, done.stderr
    assert "array '1.W' has shape (3, 8), but model.json describes (3, 100000000)" in done.stderr


def _npy(header_shape: tuple[int, ...], payload: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": header_shape})
    return buffer.getvalue() + payload


@pytest.mark.parametrize("member", ["huge-shape", "deflated-padding"])
def test_an_npz_member_is_checked_before_it_is_inflated(small_run: Path, work: Path, member: str) -> None:
    with np.load(small_run / "model.npz") as npz:
        good = {name: npz[name] for name in npz.files}
    with zipfile.ZipFile(small_run / "model.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in good.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = buffer.getvalue()
            if name == "1.W" and member == "huge-shape":
                data = _npy((10**12,), b"\0" * 64)
            elif name == "1.W":
                data += b"\0" * 300_000_000  # inflates to 300 MB behind a tiny compressed member
            archive.writestr(f"{name}.npy", data)
    assert (small_run / "model.npz").stat().st_size < 2_000_000
    done = subprocess.run(
        [sys.executable, "-m", "nnctl", "predict", str(small_run), "valid.csv"],
        cwd=work,
        capture_output=True,
        text=True,
        preexec_fn=_limited(1024),
    )
    assert done.returncode == 2, done.stderr
    assert "array '1.W' declares" in done.stderr and "refused as corrupted" in done.stderr


# ----------------------------------------------------------------------------- resume checks


def test_resume_refuses_data_that_changed(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(work / "quick.yaml", toy_config(training={"epochs": 2}))
    run = train(load_config(work / "quick.yaml"), out=work / "r").path
    write_csv(work / "train.csv", 60, seed=9)  # same shape, other rows
    code, _, err = run_cli(capsys, "train", "--resume", run, "--set", "training.epochs=4")
    assert code == 2
    assert f"cannot resume {run}: data.train {work / 'train.csv'} has changed since the run started" in err


@pytest.mark.parametrize(
    "tamper, words",
    [
        (lambda s: s | {"epoch": "three"}, "epoch: expected"),
        (lambda s: s | {"batch": 999}, "at batch 999 of"),
        (lambda s: s | {"rng": {"bit_generator": "MT19937", "state": 5}}, "random generator state is not valid"),
        (lambda s: {k: v for k, v in s.items() if k != "history"}, "history: required key is missing"),
    ],
    ids=["wrong-type", "batch-out-of-range", "rng", "missing-key"],
)
def test_a_tampered_checkpoint_is_a_clear_error(
    work: Path, capsys: pytest.CaptureFixture[str], tamper: Any, words: str
) -> None:
    write_config(work / "quick.yaml", toy_config(training={"epochs": 2}))
    run = train(load_config(work / "quick.yaml"), out=work / "r").path
    path = run / "checkpoint" / "checkpoint.npz"
    with np.load(path) as npz:
        saved = {name: npz[name] for name in npz.files}
    state = tamper(json.loads(saved["state"].tobytes()))
    saved["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    np.savez(path, **saved)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--set", "training.epochs=4")
    assert code == 2 and words in err and "internal error" not in err


# ----------------------------------------------------------------------------- names, paths, outputs


@pytest.mark.parametrize("name", ["../../x", "/abs/olute", "a\\0b", "."])
def test_a_name_is_a_plain_name(work: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    (work / "named.yaml").write_text(f'name: "{name}"\n' + (work / "slow.yaml").read_text())
    code, _, err = run_cli(capsys, "train", "named.yaml")
    assert code == 2 and "name: expected a plain name" in err
    assert sorted(p.name for p in work.iterdir()) == ["named.yaml", "slow.yaml", "train.csv", "valid.csv"]


def test_a_path_over_the_os_limit_is_an_error(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(work / "quick.yaml", toy_config(training={"epochs": 1}))
    code, _, err = run_cli(capsys, "train", "quick.yaml", "--out", "x" * 300)
    assert code == 2 and "cannot create the run directory" in err and "internal error" not in err


def test_rich_markup_in_paths_and_labels_is_shown_as_is(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(work / "valid.csv")
    frame["label"] = frame["label"].map({"yes": "[/bold]", "no": "[red]no"})
    frame.to_csv(work / "marked.csv", index=False)
    write_config(work / "marked.yaml", toy_config(data={"train": "marked.csv", "target": "label"}))
    code, out, err = run_cli(capsys, "train", "marked.yaml", "--out", "runs/r[/x]")
    assert code == 0, err
    assert "runs/r[/x]" in out
    code, out, err = run_cli(capsys, "eval", "runs/r[/x]", "marked.csv")
    assert code == 0, err
    assert "[/bold]" in out and "[red]no" in out


@pytest.mark.parametrize("command", ["predict", "plot"])
def test_output_to_a_directory_is_an_error(
    small_run: Path, work: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    (work / "adir").mkdir()
    args = [small_run, "valid.csv"] if command == "predict" else [small_run]
    code, _, err = run_cli(capsys, command, *args, "-o", work / "adir")
    assert code == 2 and "is a directory" in err and "internal error" not in err


def test_a_damaged_history_is_an_error_for_plot(small_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (small_run / "history.csv").write_text("epoch,train_loss\n1,abc\n\x00\x01")
    code, _, err = run_cli(capsys, "plot", small_run, "-o", small_run / "x.png")
    assert code == 2 and "history.csv" in err and "internal error" not in err


def test_predict_never_overwrites_an_input_column(
    small_run: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(work / "valid.csv")
    frame["prediction"] = "mine"
    frame.to_csv(work / "has_prediction.csv", index=False)
    code, out, err = run_cli(capsys, "predict", small_run, "has_prediction.csv")
    assert code == 2 and out == "" and "already has column(s) 'prediction'" in err


def test_an_unfinished_run_is_named_by_eval(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = work / "cut"
    child = nnctl_process("train", "slow.yaml", "--out", run, cwd=work)
    try:
        wait_for(lambda: epochs_done(run) >= 1)
        code, out, err = run_cli(capsys, "eval", run, "valid.csv", "--json")
        assert code == 0 and json.loads(out)["n_samples"] == 200
        assert f"note: {run} is unfinished (still training (or was killed)" in err
    finally:
        child.kill()
        child.communicate(timeout=60)


# ----------------------------------------------------------------------------- silently wrong, and too much output


def test_duplicate_yaml_keys_are_refused_naming_both_lines(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (work / "slow.yaml").read_text() + "seed: 3\n"
    (work / "dup.yaml").write_text(text)
    first, second = (i + 1 for i, line in enumerate(text.splitlines()) if line.startswith("seed:"))
    code, _, err = run_cli(capsys, "summary", "dup.yaml")
    assert code == 2 and f"duplicate key 'seed' (lines {first} and {second}); keep one" in err


def test_a_huge_feature_is_standardised_not_zeroed(work: Path) -> None:
    frame = pd.read_csv(work / "valid.csv")
    frame["a"] = frame["a"] * 1e300
    frame.to_csv(work / "huge.csv", index=False)
    write_config(work / "huge.yaml", toy_config(data={"train": "huge.csv", "target": "label"}, training={"epochs": 3}))
    run = train(load_config(work / "huge.yaml"), out=work / "h").path
    with np.load(run / "model.npz") as npz:
        std, first = npz["0.std"][0], npz["1.W"][0]
    assert np.isfinite(std).all() and 1e299 < std[0] < 1e301
    assert np.abs(first).max() > 0.01  # the column still carries weight


def test_eval_json_is_valid_json_with_null_for_nan() -> None:
    from nnctl.cli import to_json

    text = to_json({"loss": float("nan"), "values": [1.0, float("inf")], "m": [[1, 2], [3, 4]]})
    assert json.loads(text) == {"loss": None, "values": [1.0, None], "m": [[1, 2], [3, 4]]}
    assert "NaN" not in text and "Infinity" not in text


def test_gradcheck_refuses_an_infinite_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "gradcheck", "--eps", "inf")
    assert code == 2 and "--eps" in err


def test_two_thousand_classes_give_readable_output(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    n, k = 4000, 2000
    frame = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "label": [f"c{i % k:04d}" for i in range(n)]}
    )
    frame.to_csv(work / "many.csv", index=False)
    layers = toy_layers(hidden=4, classes=k)
    write_config(
        work / "many.yaml",
        toy_config(
            data={"train": "many.csv", "target": "label"}, layers=layers, training={"epochs": 1, "batch_size": 500}
        ),
    )
    run = train(load_config(work / "many.yaml"), out=work / "m").path
    started = time.monotonic()
    code, out, err = run_cli(capsys, "eval", run, "many.csv")
    assert code == 0 and time.monotonic() - started < 20
    assert len(out.splitlines()) < 40 and "2,000 classes (--per-class shows the table)" in out
    assert "most frequent confusions" in out
    code, out, _ = run_cli(capsys, "eval", run, "many.csv", "--json")
    assert code == 0 and len(out) < 4 * k * k + 500 * k  # the K×K matrix at ≤ 4 bytes a cell, the rest linear
    frame.loc[0, "label"] = "never-seen"
    frame.to_csv(work / "unseen.csv", index=False)
    code, _, err = run_cli(capsys, "eval", run, "unseen.csv")
    assert code == 2 and len(err) < 400 and "2,000 classes: 'c0000', 'c0001'" in err


# ----------------------------------------------------------------------------- beyond the reported attacks


@pytest.mark.parametrize("where", ["config", "data", "model.json", "model.npz"])
def test_an_endless_device_is_refused_not_read_forever(
    small_run: Path, work: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "config":
        code, _, err = run_cli(capsys, "summary", "/dev/zero")
    elif where == "data":
        write_config(work / "dev.yaml", toy_config(data={"train": "/dev/zero", "target": "label"}))
        code, _, err = run_cli(capsys, "summary", "dev.yaml")
    else:
        (small_run / where).unlink()
        (small_run / where).symlink_to("/dev/zero")
        code, _, err = run_cli(capsys, "eval", small_run, "valid.csv")
    assert code == 2 and ("is a device" in err or "not a regular file" in err), err


def test_a_truncated_checkpoint_is_a_clear_error(small_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = small_run / "checkpoint" / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:-100])
    code, _, err = run_cli(capsys, "train", "--resume", small_run, "--set", "training.epochs=4")
    assert code == 2 and "checkpoint.npz: truncated or corrupted" in err


def test_a_symlinked_run_directory_loop_is_a_clear_error(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "loop").symlink_to(work / "loop")
    code, _, err = run_cli(capsys, "eval", work / "loop", "valid.csv")
    assert code == 2 and "internal error" not in err
