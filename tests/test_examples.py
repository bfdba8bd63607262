"""The example configs in configs/: each one loads and builds, and the two small ones train to their goal.

Building is parametrised over the glob, so a new example is covered as soon as it is added.
Only xor and iris are trained here (well under a second together); the larger examples take
seconds each and are checked by hand with `nnctl train` and `nnctl eval`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nnctl import load_config, load_run
from nnctl.experiment import set_up, train

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
DATA = ROOT / "data"


def test_there_are_examples() -> None:
    assert {"iris", "xor"} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_loads_and_builds(path: Path) -> None:
    config = load_config(path)
    assert config.name == path.stem  # the run directory matches the file name
    assert config.data.train.is_file()  # paths resolve relative to the config file
    setup = set_up(config)
    yhat = setup.network.forward(setup.train.X[:3])
    assert yhat.shape == (3, setup.encoding.n_outputs)


def test_xor_learns_all_four_rows(tmp_path: Path) -> None:
    result = train(load_config(ROOT / "configs" / "xor.yaml"), out=tmp_path / "xor")
    frame = pd.read_csv(DATA / "xor.csv")
    predictions = load_run(result.path).predict(frame)
    assert predictions["prediction"].astype(int).tolist() == frame["y"].tolist()


def test_iris_reaches_its_target_on_the_test_split(tmp_path: Path) -> None:
    result = train(load_config(ROOT / "configs" / "iris.yaml"), out=tmp_path / "iris")
    metrics = load_run(result.path).evaluate(pd.read_csv(DATA / "iris_test.csv"))
    assert metrics["n_samples"] == 30
    assert metrics["accuracy"] >= 0.93


def test_penguins_trains_on_the_raw_file_and_scores_its_test_split(tmp_path: Path) -> None:
    result = train(load_config(ROOT / "configs" / "penguins.yaml"), out=tmp_path / "penguins")
    assert result.test is not None and result.test["n_samples"] == 69
    assert result.test["accuracy"] >= 0.95  # the README's figure: the median of seeds 0-4 is 1.0
    raw = pd.read_csv(DATA / "penguins_test.csv", keep_default_na=False)
    assert load_run(result.path).evaluate(raw)["accuracy"] == result.test["accuracy"]
