"""Data loading and the config details a trained run records: labels, splits, the resolved config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from nnctl import load_config, load_run
from nnctl.config import validate_config
from nnctl.data import Dataset, split
from nnctl.errors import ConfigError, RunError
from nnctl.experiment import set_up, train

CONFIG = """\
data: {train: train.csv, target: y}
layers: [input, {fully_connected: {units: 4}}, tanh, {fully_connected: {units: 3}}, softmax]
objective: cross_entropy
optimizer: {name: adam, learning_rate: 0.05}
training: {epochs: 2, batch_size: 4}
"""


def write(tmp_path: Path, csv: str, config: str = CONFIG) -> Path:
    (tmp_path / "train.csv").write_text(csv)
    path = tmp_path / "c.yaml"
    path.write_text(config)
    return path


def test_none_and_na_are_real_class_labels(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i % 3},{label}\n" for i, label in enumerate(["None", "NA", "null"] * 4))
    setup = set_up(load_config(write(tmp_path, "a,b,y\n" + rows)))
    assert setup.encoding.classes == ["NA", "None", "null"]
    assert setup.train.Y.sum(axis=0).tolist() == [4, 4, 4]


def test_labels_that_differ_only_by_spaces_are_one_class(tmp_path: Path) -> None:
    rows = "a,b,y\n1,2,x\n2,3,x \n3,1,y\n4,4,z\n5,1, y \n6,2,z\n"
    setup = set_up(load_config(write(tmp_path, rows)))
    assert setup.encoding.classes == ["x", "y", "z"]


def test_na_text_in_a_feature_column_is_a_missing_value(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"column 'b', row 2 \(line 3\): expected a number, got a missing value 'NA'"):
        set_up(load_config(write(tmp_path, "a,b,y\n1,2,x\n2,NA,y\n3,1,z\n")))


def test_saved_config_names_the_features_it_trained_on(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,y\n" + "".join(f"{i},{i * 7 % 5},{'xyz'[i % 3]}\n" for i in range(12)))
    result = train(load_config(path), out=tmp_path / "run")
    saved = yaml.safe_load((result.path / "config.yaml").read_text())
    assert saved["data"]["features"] == ["a", "b"]
    # and resuming with the original config (features unset) is not a difference
    more = load_config(path, ["training.epochs=3"])
    assert train(more, resume=result.path).epoch == 3


def test_only_the_chosen_optimizers_settings_are_saved_and_accepted(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG)
    config = validate_config(raw)
    shared = {"name", "learning_rate", "schedule", "weight_decay", "clip_norm"}  # every optimizer's keys
    assert set(config.to_dict()["optimizer"]) == shared | {"beta1", "beta2", "delta"}
    raw["optimizer"] = {"name": "momentum", "learning_rate": 0.1, "beta1": 0.3}
    with pytest.raises(ConfigError, match=r"optimizer\.beta1: only used by adam, but optimizer\.name is 'momentum'"):
        validate_config(raw)


def test_a_stack_without_fully_connected_layers_says_to_add_one(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "layers: [input, {fully_connected: {units: 4}}, tanh, {fully_connected: {units: 3}}, softmax]",
        "layers: [input, softmax]",
    )
    path = write(tmp_path, "a,b,y\n1,2,x\n2,3,y\n3,1,z\n", config)
    with pytest.raises(
        ConfigError, match=r"layers: the network ends with 2 outputs .* add a fully_connected layer with 3 units"
    ):
        set_up(load_config(path))


def test_an_unwritable_run_directory_is_a_run_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,y\n1,2,x\n2,3,y\n3,1,z\n")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RunError, match="cannot create the run directory"):
        train(load_config(path), out=tmp_path / "file" / "run")


def test_several_log_loss_columns_are_split_without_stratifying(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Y = rng.integers(0, 2, size=(40, 2)).astype(float)
    data = Dataset(rng.normal(size=(40, 3)), Y, "mem")
    kept, held = split(data, 0.25, np.random.default_rng(1))  # no labels: a plain random split
    assert len(kept) + len(held) == 40 and len(held) == 10


def test_loaded_run_predicts_with_stripped_labels(tmp_path: Path) -> None:
    rows = "a,b,y\n" + "".join(f"{i},{i * 7 % 5},{' x' if i % 2 else 'y '}\n" for i in range(12))
    config = CONFIG.replace("units: 3", "units: 2")
    result = train(load_config(write(tmp_path, rows, config)), out=tmp_path / "run")
    assert load_run(result.path).encoding.classes == ["x", "y"]
