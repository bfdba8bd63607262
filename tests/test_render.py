"""What a terminal shows, at 60 and 200 columns: nothing a user needs is cut, and logs stay short."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, toy_config, write_config, write_csv
from rich.console import Console

from nnctl import gradcheck as gc
from nnctl.cells import fmt, plural, when
from nnctl.experiment import TrainResult
from nnctl.render import TrainingDisplay, fit_fields, gradcheck_table, training_summary
from nnctl.train import TrainingState

WIDTHS = [60, 200]
NUMBER = re.compile(r"\d\.\d\de[-+]\d\d")


def rendered(renderable: Any, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def record(epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": 0.123456,
        "validation_loss": 0.0987654,
        "train_accuracy": 0.987654,
        "validation_accuracy": 0.9123456,
        "learning_rate": 0.01,
        "seconds": 0.01,
    }


@pytest.mark.parametrize("width", [20, 40, 60, 200])
def test_the_status_line_drops_fields_instead_of_cutting_numbers(width: int) -> None:
    fields = TrainingDisplay._fields(record(3), 123456.0)
    text = fit_fields(fields, width).plain
    assert "…" not in text and len(text) <= max(width, len("val_loss 0.09877"))
    assert "val_loss 0.09877" in text  # the most useful field is always there
    if width >= 200:
        assert "samples/s" in text and "accuracy 0.9877" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_gradcheck_shows_full_exponents_and_whole_module_names(width: int) -> None:
    checks = gc.check_builtin(4, 1e-6)
    out = rendered(gradcheck_table(checks, 1e-6), width)
    assert all(len(line) <= width for line in out.splitlines())
    assert "…" not in out
    assert len(NUMBER.findall(out)) == 2 * len(checks)  # every error, whole
    for name in ("fully_connected", "softmax", "cross_entropy"):
        assert name in out
    assert "h = 1e-06" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_the_training_summary_fits(width: int) -> None:
    history = [record(e) for e in range(1, 301)]
    result = TrainResult(Path("runs/a-rather-long-name/for-a-run"), "early_stopping", 300, 0, 250, history, True)
    out = rendered(training_summary(result, width), width)
    assert all(len(line) <= width for line in out.splitlines())
    sparks = [line for line in out.splitlines() if any(c in line for c in "▁▂▃▄▅▆▇█")]
    assert len(sparks) == 2 and all("loss (log)" in line for line in sparks)  # each fits beside its label
    assert "(epoch mean)" in out and "weights restored" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_summary_cuts_nothing(width: int) -> None:
    """A deep stack (digits_dropout: 10 modules, 256-unit shapes): every table of `nnctl summary` fits."""
    from nnctl.config import load_config
    from nnctl.experiment import set_up
    from nnctl.render import summary_parts

    config = Path(__file__).resolve().parent.parent / "configs" / "digits_dropout.yaml"
    out = "".join(rendered(part, width) for part in summary_parts(set_up(load_config(config)).summary()))
    assert "…" not in out and all(len(line) <= width for line in out.splitlines())
    for whole in ("fully_connected", "cross_entropy", "R^{256×256}", "full (VJP)", "85,002"):
        assert whole in out


def test_a_log_has_about_a_hundred_lines_plus_the_best_and_the_last() -> None:
    file = io.StringIO()
    display = TrainingDisplay(Console(file=file, width=100), quiet=False)
    state = TrainingState(seen=10)
    display.on_train_begin(state, 1000, 4)
    for epoch in range(1, 738):
        state.best_epoch = min(epoch, 555)
        state.stop_reason = "early_stopping" if epoch == 737 else None
        display.on_epoch_end(record(epoch), state)
    lines = file.getvalue().splitlines()
    assert len(lines) <= 100
    assert lines[0].startswith("epoch 1/1000") and lines[-1].startswith("epoch 737/1000")
    assert lines[-2].startswith("epoch 555/1000") and lines[-2].endswith("(best)")
    assert [int(line.split()[1].split("/")[0]) for line in lines[1:-2]] == list(range(10, 737, 10))


def test_the_live_bar_stops_when_training_raises() -> None:
    """The display owns its closing: leaving its `with` on an error stops the live bar (the CLI adds no close())."""
    display = TrainingDisplay(Console(file=io.StringIO(), width=100, force_terminal=True), quiet=False)
    assert display.live
    with pytest.raises(RuntimeError), display:
        display.on_train_begin(TrainingState(), 10, 4)
        progress = display.progress
        assert progress is not None and progress.live.is_started
        raise RuntimeError("diverged")
    assert display.progress is None and not progress.live.is_started


def toy_project(tmp_path: Path, **training: int) -> Path:
    """train.csv, valid.csv and the toy config c.yaml (`training` as given) in tmp_path; returns the config."""
    write_csv(tmp_path / "train.csv", 40, seed=1)
    write_csv(tmp_path / "valid.csv", 20, seed=2)
    return write_config(tmp_path / "c.yaml", toy_config(training=training))


def test_log_every_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = toy_project(tmp_path, epochs=30, batch_size=8)
    code, out, _ = run_cli(capsys, "train", config, "--out", tmp_path / "r", "--log-every", "10")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    regular = [line.split()[1] for line in lines if not line.endswith("(best)")]
    assert regular == ["1/30", "10/30", "20/30", "30/30"] and len(lines) <= 5
    assert out.rstrip().splitlines()[-1] == f"saved to {tmp_path / 'r'}"


def test_eval_names_its_loss_and_mape_is_a_percentage() -> None:
    from nnctl.render import evaluation_tables

    regression = {
        "loss": 2.5,
        "objective": "squared_error",
        "n_samples": 10,
        "mse": 1.25,
        "mape": 12.5,
        "per_target": {t: {"mse": 1.0, "rmse": 1.0, "mae": 1.0, "r2": 0.5, "mape": 12.5} for t in "ab"},
    }
    out = "".join(rendered(t, 100) for t in evaluation_tables(regression, "r on x.csv")[:1])
    assert "loss (squared_error, summed over 2 targets)" in out and "12.5 %" in out


def test_predict_reads_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    config = toy_project(tmp_path, epochs=2)
    assert run_cli(capsys, "train", config, "--out", tmp_path / "r", "-q")[0] == 0
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "valid.csv").read_bytes())))
    code, out, err = run_cli(capsys, "predict", tmp_path / "r", "-")
    assert code == 0, err
    assert out.splitlines()[0] == "a,b,c,label,prediction,prob_no,prob_yes" and len(out.splitlines()) == 21


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg"])
def test_plot_writes_the_format_of_its_extension(tmp_path: Path, capsys: Any, suffix: str) -> None:
    config = toy_project(tmp_path, epochs=3)
    assert run_cli(capsys, "train", config, "--out", tmp_path / "r", "-q")[0] == 0
    code, _, err = run_cli(capsys, "plot", tmp_path / "r", "-o", tmp_path / f"curves.{suffix}")
    assert code == 0, err
    head = (tmp_path / f"curves.{suffix}").read_bytes()[:200]
    assert {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<svg"}[suffix] in head
    code, _, err = run_cli(capsys, "plot", tmp_path / "r", "-o", tmp_path / "curves.gif")
    assert code == 2 and "'.gif' is not a plot format nnctl writes; use .png, .pdf or .svg" in err


def test_one_cell_format_one_plural_one_date() -> None:
    assert [fmt(v) for v in (None, 0.123456, 3, "adam", True, [16, 8], {"relu": None})] == [
        "–",
        "0.1235",
        "3",
        "adam",
        "true",
        "[16,8]",
        '{"relu":null}',
    ]
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert [plural(n, "entry", "entries") for n in (1, 2)] == ["1 entry", "2 entries"]
    assert when("2024-05-01T12:34:56Z") == when("2024-05-01T12:34:56+0200") == "2024-05-01 12:34"
    assert when(None) == "–"
