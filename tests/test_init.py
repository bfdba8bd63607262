"""`nnctl init`: a starter config from a user's own CSV trains as it is (on every example data file and on
generated CSVs with identifiers, text, gaps and every kind of target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run_cli

DATA = Path(__file__).resolve().parent.parent / "data"
EXAMPLES = {
    "breast_cancer_train.csv": "diagnosis",
    "diabetes_train.csv": "progression",
    "digits_train.csv": "digit",
    "iris_train.csv": "species",
    "penguins_train.csv": "species",  # raw: text columns and NA cells
    "wine_train.csv": "cultivar",
    "xor.csv": "y",
}


def init_and_train(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: Path, target: str) -> dict:
    config = tmp_path / "configs" / "starter.yaml"
    config.parent.mkdir(exist_ok=True)
    code, _, err = run_cli(capsys, "init", data, "--target", target, "-o", config)
    assert code == 0, err
    assert f"wrote {config}; train it with: nnctl train {config}" in err
    code, _, err = run_cli(capsys, "summary", config)
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", config, "--set", "training.epochs=3", "--out", tmp_path / "run", "-q")
    assert code == 0, err
    return yaml.safe_load(config.read_text())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_init_then_train_on_every_example(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    config = init_and_train(tmp_path, capsys, DATA / name, EXAMPLES[name])
    assert not Path(config["data"]["train"]).is_absolute()  # relative to the config file
    assert (tmp_path / "configs" / config["data"]["train"]).resolve() == (DATA / name).resolve()


@pytest.mark.parametrize(
    "target, objective, output, units",
    [
        ("label", "cross_entropy", "softmax", 3),
        ("yes_no", "log_loss", "logistic", 1),
        ("amount", "squared_error", "linear", 1),
        ("grade", "cross_entropy", "softmax", 4),
    ],
)
def test_the_target_decides_the_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, objective: str, output: str, units: int
) -> None:
    rng = np.random.default_rng(0)
    n = 90
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "label": rng.choice(["red", "green", "blue"], size=n),
            "yes_no": rng.choice(["yes", "no"], size=n),
            "amount": rng.normal(100, 20, size=n),
            "grade": rng.integers(1, 5, size=n),
        }
    )
    frame.to_csv(tmp_path / "mine.csv", index=False)
    config = init_and_train(tmp_path, capsys, tmp_path / "mine.csv", target)
    assert config["objective"] == objective
    assert config["layers"][-1] == output and config["layers"][-2] == {"fully_connected": {"units": units}}
    assert "customer_id" not in config["data"]["features"]
    text = (tmp_path / "configs" / "starter.yaml").read_text()
    assert "# left out: customer_id: its name says it is an identifier" in text


def test_unique_integers_are_left_out_and_text_columns_handled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    n = 60
    frame = pd.DataFrame(
        {
            "serial": rng.permutation(n) * 7,
            "size": rng.normal(size=n),
            "colour": rng.choice(["a", "b"], size=n),
            "y": rng.normal(size=n),
        }
    )
    frame.to_csv(tmp_path / "mine.csv", index=False)
    config = init_and_train(tmp_path, capsys, tmp_path / "mine.csv", "y")
    text = (tmp_path / "configs" / "starter.yaml").read_text()
    assert "# left out: serial: a different whole number in every row" in text
    assert config["data"]["categorical"] == ["colour"]


def test_init_never_overwrites_and_names_a_wrong_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken.yaml").write_text("mine")
    code, _, err = run_cli(
        capsys, "init", DATA / "iris_train.csv", "--target", "species", "-o", tmp_path / "taken.yaml"
    )
    assert code == 2 and "already exists; pass --force" in err and (tmp_path / "taken.yaml").read_text() == "mine"
    code, _, err = run_cli(capsys, "init", DATA / "iris_train.csv", "--target", "specie", "-o", tmp_path / "x.yaml")
    assert code == 2 and "--target: column 'specie' not found" in err and not (tmp_path / "x.yaml").exists()


def test_init_declares_the_raw_penguins_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = init_and_train(tmp_path, capsys, DATA / "penguins_train.csv", "species")
    # `NA` is a missing number, not text: bill_length_mm stays numeric; island and sex are categories
    assert config["data"]["categorical"] == ["island", "sex"]
    assert config["data"]["missing"] == "median"
    assert "bill_length_mm" in config["data"]["features"]
