"""`nnctl runs`, `nnctl diff` and `nnctl plot RUN...` on a tree of real runs (docs/reference.md#nnctl-runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from helpers import run_cli, toy_config, write_config, write_csv
from rich.console import Console

import nnctl
from nnctl.errors import DivergenceError
from nnctl.experiment import train
from nnctl.render_runs import runs_table
from nnctl.runs import differing_keys, flatten, short_names, table_rows
from nnctl.runs import list_runs as list_records

matplotlib.use("Agg")


def _train(root: Path, out: str, *overrides: str, data: str = "train.csv") -> Path:
    config = toy_config(data={"train": data, "validation": "valid.csv", "target": "label"})
    config = nnctl.load_config(write_config(root / "toy.yaml", config), ["training.epochs=4", *overrides])
    return train(config, out=root / "runs" / out, command=["test"]).path


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/a, runs/b (another learning rate), a sweep's trials/0001 and 0002 (other widths), runs/other (other
    training data), runs/bad (diverged), runs/broken (a corrupt model.json) and a folder that is no run."""
    root = tmp_path_factory.mktemp("runs")
    write_csv(root / "train.csv", 40, seed=0)
    write_csv(root / "other.csv", 40, seed=3)
    write_csv(root / "valid.csv", 15, seed=1)
    _train(root, "a")
    _train(root, "b", "optimizer.learning_rate=0.2")
    for trial, units in (("0001", 2), ("0002", 16)):
        _train(root, f"sweep/trials/{trial}", f"layers.1.fully_connected.units={units}")
    _train(root, "other", data="other.csv")
    with pytest.raises(DivergenceError):
        _train(root, "bad", "optimizer.name=sgd", "optimizer.learning_rate=1e300", "layers.2=relu")
    (root / "runs" / "broken").mkdir()
    (root / "runs" / "broken" / "model.json").write_text("{not json")
    (root / "runs" / "notes").mkdir()
    (root / "runs" / "notes" / "readme.txt").write_text("not a run")
    for weights in (root / "runs").rglob("*.npz"):
        weights.unlink()  # `runs` and `diff` never read weights (nor the data)
    return root


def runs_json(capsys: pytest.CaptureFixture[str], *args: object) -> list[dict]:
    code, out, err = run_cli(capsys, "runs", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_runs_lists_every_run_with_its_results(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "runs", tree / "runs", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["run"] for r in rows] == ["a", "b", "bad", "other", "sweep/trials/0001", "sweep/trials/0002"]
    assert "warning: skipped" in err and "broken" in err
    a = rows[0]
    history = pd.read_csv(tree / "runs" / "a" / "history.csv")
    best = history.loc[history["epoch"] == a["best_epoch"]].iloc[0]
    assert a["status"] == "finished" and a["epochs"] == 4 == len(history)
    assert a["best_epoch"] == int(history["validation_loss"].idxmin()) + 1
    assert a["validation_loss"] == pytest.approx(best["validation_loss"])
    assert a["validation_accuracy"] == pytest.approx(best["validation_accuracy"])
    assert a["seconds"] == pytest.approx(history["seconds"].sum(), abs=1e-3)
    assert a["created"] == json.loads((tree / "runs" / "a" / "model.json").read_text())["provenance"]["created"]
    assert {r["run"]: r["status"] for r in rows}["bad"] == "diverged"


def test_runs_columns_are_the_config_keys_that_differ(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = runs_json(capsys, tree / "runs")
    assert list(rows[0]["params"]) == [
        "data.train",
        "layers.1.fully_connected.units",
        "layers.2",  # the diverged run's relu
        "optimizer.name",  # and its sgd, which has no beta1, beta2 nor delta
        "optimizer.learning_rate",
        "optimizer.beta1",
        "optimizer.beta2",
        "optimizer.delta",
    ]
    params = {r["run"]: r["params"] for r in rows}
    assert params["b"]["optimizer.learning_rate"] == 0.2 and params["a"]["optimizer.learning_rate"] == 0.05
    assert params["sweep/trials/0001"]["layers.1.fully_connected.units"] == 2
    assert params["other"]["data.train"] == str(tree / "other.csv")
    sweep = runs_json(capsys, tree / "runs" / "sweep")
    assert [r["run"] for r in sweep] == ["trials/0001", "trials/0002"]
    assert [r["params"] for r in sweep] == [{"layers.1.fully_connected.units": u} for u in (2, 16)]


def test_runs_of_one_run_and_of_none(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (single,) = runs_json(capsys, tree / "runs" / "a")
    assert single["run"] == "a" and single["params"] == {}
    assert runs_json(capsys, tmp_path) == []
    code, out, err = run_cli(capsys, "runs", tmp_path)
    assert code == 0 and out == "" and f"no runs under {tmp_path}" in " ".join(err.split())
    code, _, err = run_cli(capsys, "runs", tmp_path / "missing")
    assert code == 2 and "directory not found" in err


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("validation_loss", "ascending"),
        ("-validation_loss", "descending"),
        ("val_loss", "ascending"),
        ("learning_rate", "ascending"),
        ("-optimizer.learning_rate", "descending"),
    ],
)
def test_runs_sort(tree: Path, key: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = runs_json(capsys, tree / "runs", f"--sort={key}")
    column = key.lstrip("-").replace("val_", "validation_")
    values = [r.get(column, r["params"].get("optimizer." + column, r["params"].get(column))) for r in rows]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=expected == "descending") and len(set(present)) > 1
    assert values[len(present) :] == [None] * (len(values) - len(present))  # empty values last


def test_runs_sort_by_an_unknown_column_suggests_one(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "runs", tree / "runs", "--sort", "validation_los")
    assert code == 2 and out == ""
    assert "--sort: unknown column 'validation_los' (did you mean 'validation_loss'?)" in err


def test_runs_table_shows_what_fits_and_names_the_rest(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records, _ = list_records(tree / "runs")
    rows, keys = table_rows(records)
    for width in (60, 80, 200):
        table, hidden = runs_table(rows, keys, short_names(keys), "title", width)
        console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        console.print(table)
        lines = console.export_text().splitlines()
        assert max(len(line) for line in lines) <= width
        header = lines[1].split()
        assert header[:2] == ["run", "status"] and "val_loss" in header
        assert ("created" in hidden) == (width < 150)
        assert all(short_names(keys)[k] not in header for k in hidden if k in keys)
    assert hidden == []
    code, out, _ = run_cli(capsys, "runs", tree / "runs")  # 80 columns, not a terminal
    assert code == 0 and "sweep/trials/0002" in out and "not shown at this width" in out


def test_differing_keys_and_short_names() -> None:
    a = flatten({"optimizer": {"lr": 0.1}, "layers": ["relu", {"fc": {"units": 2}}], "feats": ["x", "y"], "es": None})
    b = flatten({"optimizer": {"lr": 0.1}, "layers": ["relu", {"fc": {"units": 4}}], "feats": ["x"], "es": {"p": 3}})
    assert a == {"optimizer.lr": 0.1, "layers.0": "relu", "layers.1.fc.units": 2, "feats": ["x", "y"], "es": None}
    assert differing_keys([a, b]) == ["layers.1.fc.units", "feats", "es.p"]  # `es` yields to `es.p`
    fc = {"fc": {"units": 2}}
    relu, leaky = flatten({"layers": [fc, "relu"]}), flatten({"layers": [fc, {"leaky_relu": {"alpha": 0.1}}]})
    assert differing_keys([relu, leaky]) == ["layers.1", "layers.1.leaky_relu.alpha"]  # the layer's change shows
    assert short_names(["optimizer.lr", "layers.1.fc.units", "layers.3.fc.units", "layers.2"]) == {
        "optimizer.lr": "lr",
        "layers.1.fc.units": "layers.1.fc.units",  # never a bare list index such as `1.fc.units` or `2`
        "layers.3.fc.units": "layers.3.fc.units",
        "layers.2": "layers.2",
    }
    assert short_names(["optimizer.name", "data.train"], taken=["name", "seed"]) == {
        "optimizer.name": "optimizer.name",  # `name` is the run's name
        "data.train": "train",
    }


# ----------------------------------------------------------------------------- diff


def test_diff_json(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "diff", tree / "runs" / "a", tree / "runs" / "b", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["config"] == [{"key": "optimizer.learning_rate", "a": 0.05, "b": 0.2}]
    assert result["same_data"] is True
    rows = {r["run"]: r for r in runs_json(capsys, tree / "runs")}
    for metric in ("best_epoch", "validation_loss", "train_loss", "validation_accuracy", "epochs"):
        assert result["metrics"][metric] == {"a": rows["a"][metric], "b": rows["b"][metric]}


def test_diff_tells_other_data(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "diff", tree / "runs" / "a", tree / "runs" / "other", "--json")
    result = json.loads(out)
    assert code == 0 and result["same_data"] is False
    assert [c["key"] for c in result["config"]] == ["data.train"]
    assert result["data"]["train"]["a"] != result["data"]["train"]["b"]
    assert result["data"]["validation"]["a"] == result["data"]["validation"]["b"]
    code, out, _ = run_cli(capsys, "diff", tree / "runs" / "a", tree / "runs" / "other")
    assert "data: different training data (sha256 differs)" in " ".join(out.split())


def test_diff_text(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "diff", tree / "runs" / "a", tree / "runs" / "b")
    text = " ".join(out.split())
    assert code == 0
    assert f"A: {tree / 'runs' / 'a'} B: {tree / 'runs' / 'b'}" in text
    assert "optimizer.learning_rate │ 0.05 │ 0.2" in text
    assert "validation_loss" in text and "data: the same files (training sha256" in text
    code, out, _ = run_cli(capsys, "diff", tree / "runs" / "a", tree / "runs" / "a")
    assert code == 0 and "config: identical" in out


def test_diff_errors_and_runs_without_provenance(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "diff", tree / "runs" / "a", tree / "runs" / "notes")
    assert code == 2 and "not a run directory (model.json not found)" in err
    old = tmp_path / "old"
    shutil.copytree(tree / "runs" / "b", old)
    meta = json.loads((old / "model.json").read_text())
    del meta["provenance"]
    (old / "model.json").write_text(json.dumps(meta))
    code, out, _ = run_cli(capsys, "diff", tree / "runs" / "a", old, "--json")
    assert code == 0 and json.loads(out)["same_data"] is None


# ----------------------------------------------------------------------------- plot RUN...


def test_plot_overlays_runs_with_a_legend_and_best_epochs(tree: Path) -> None:
    import matplotlib.pyplot as plt

    from nnctl.plot import comparison_figure

    runs = [tree / "runs" / "a", tree / "runs" / "b", tree / "runs" / "sweep" / "trials" / "0001"]
    fig = comparison_figure(plt, runs)
    loss, metric = fig.axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "a (units=8, learning_rate=0.05)",
        "b (units=8, learning_rate=0.2)",
        "sweep/trials/0001 (units=2, learning_rate=0.05)",
        "train",
        "validation",
        "best epoch",
    ]
    for ax in (loss, metric):
        curves = [line for line in ax.get_lines() if line.get_marker() in ("None", None, "")]
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert len(curves) == 6 and len(stars) == 3  # train and validation per run; one best epoch each
        assert len({str(c.get_color()) for c in curves}) == 3  # one colour per run
    best = {r["run"]: r for r in json.loads(_runs_json_text(tree))}
    for star, name in zip([s for s in loss.get_lines() if s.get_marker() == "*"], ["a", "b"], strict=False):
        assert star.get_xdata()[0] == best[name]["best_epoch"]
        assert star.get_ydata()[0] == pytest.approx(best[name]["validation_loss"])
    plt.close(fig)


def _runs_json_text(tree: Path) -> str:
    from nnctl.runs import list_runs, table_rows

    return json.dumps(table_rows(list_runs(tree / "runs")[0])[0])


def test_plot_several_runs_writes_one_png(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "plot", tree / "runs" / "a", tree / "runs" / "other")
    assert code == 0, err
    assert out.strip() == "wrote learning_curves.png"
    assert (tmp_path / "learning_curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    code, _, err = run_cli(capsys, "plot", tree / "runs" / "a", tree / "runs" / "notes", "-o", tmp_path / "x.png")
    assert code == 2 and "not a run directory" in err and not (tmp_path / "x.png").exists()


def test_keys_that_differ_within_an_experiment_come_first(tmp_path: Path) -> None:
    from nnctl.runs import RunRecord, within_experiments

    def record(name: str, lr: float, data: str) -> RunRecord:
        return RunRecord(tmp_path, name, {}, {"name": name, "data.train": data, "optimizer.learning_rate": lr})

    records = [record("iris", 0.1, "/d/iris.csv"), record("iris", 0.2, "/d/iris.csv"), record("xor", 0.1, "/d/x.csv")]
    keys = differing_keys([r.config for r in records])
    assert keys == ["name", "data.train", "optimizer.learning_rate"]
    assert within_experiments(keys, records) == ["optimizer.learning_rate", "name", "data.train"]


def test_runs_table_shows_file_names_of_paths(tree: Path) -> None:
    records, _ = list_records(tree / "runs")
    rows, keys = table_rows(records)
    table, _ = runs_table(rows, keys, short_names(keys), "title", 250)
    console = Console(width=250, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    text = console.export_text()
    assert "other.csv" in text and "train.csv" in text and str(tree) not in text


def test_plot_gives_each_metric_its_own_panel(tree: Path, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from nnctl.plot import comparison_figure

    write_csv(tmp_path / "reg.csv", 30, seed=0, task="regression")
    config = {
        "data": {"train": "reg.csv", "target": "y"},
        "layers": [{"input": {}}, {"fully_connected": {"units": 1}}, "linear"],
        "objective": "squared_error",
        "training": {"epochs": 3},
    }
    regression = train(nnctl.load_config(write_config(tmp_path / "reg.yaml", config)), out=tmp_path / "reg").path
    fig = comparison_figure(plt, [tree / "runs" / "a", regression])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "rmse"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2 + 1 + 1 + 1, 2 + 1, 1 + 1]  # curves and stars per run
    plt.close(fig)
