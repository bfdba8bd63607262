"""model.json's `provenance` and `nnctl eval`'s warning on training data (docs/reference.md#provenance)."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, toy_config, write_config, write_csv

import nnctl
from nnctl.experiment import train
from nnctl.files import file_sha256


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    write_csv(tmp_path / "train.csv", 40, seed=0)
    write_csv(tmp_path / "valid.csv", 15, seed=1)
    write_csv(tmp_path / "test.csv", 15, seed=2)
    return tmp_path


def test_train_records_versions_time_command_and_data(toy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(toy / "toy.yaml", toy_config())
    args = ["train", config, "--set", "training.epochs=3", "--out", toy / "run", "--quiet"]
    before = datetime.now(timezone.utc).replace(microsecond=0)
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    record = json.loads((toy / "run" / "model.json").read_text())["provenance"]
    assert set(record) == {"nnctl_version", "python", "numpy", "platform", "created", "command", "data"}
    assert record["nnctl_version"] == nnctl.__version__
    assert record["python"] == platform.python_version() and record["numpy"] == np.__version__
    assert record["platform"] == platform.platform()
    created = datetime.strptime(record["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= created <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert record["command"] == ["nnctl", *map(str, args)]
    train_file, valid_file = toy / "train.csv", toy / "valid.csv"
    assert record["data"] == {
        "train": {"path": str(train_file), "sha256": sha256(train_file), "rows": 40, "columns": 4}
        | {"bytes": train_file.stat().st_size},
        "validation": {"path": str(valid_file), "sha256": sha256(valid_file), "rows": 15, "columns": 4}
        | {"bytes": valid_file.stat().st_size},
    }


def test_a_validation_split_counts_the_whole_file(toy: Path) -> None:
    config = toy_config(data={"train": "train.csv", "validation_split": 0.25, "target": "label"})
    result = train(nnctl.load_config(write_config(toy / "split.yaml", config)), out=toy / "run", command=["x", "y"])
    record = json.loads((result.path / "model.json").read_text())["provenance"]
    assert record["command"] == ["x", "y"]
    assert set(record["data"]) == {"train"}  # the validation rows come from the training file
    assert record["data"]["train"]["rows"] == 40


def test_the_library_records_the_process_arguments_by_default(toy: Path) -> None:
    result = train(nnctl.load_config(write_config(toy / "toy.yaml", toy_config())), out=toy / "run")
    record = json.loads((result.path / "model.json").read_text())["provenance"]
    assert record["command"] == [Path(sys.argv[0]).name, *sys.argv[1:]]


def test_resume_keeps_the_original_record_and_lists_the_resume(toy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(toy / "toy.yaml", toy_config())
    code, _, err = run_cli(capsys, "train", config, "--set", "training.epochs=2", "--out", toy / "run", "-q")
    assert code == 0, err
    first = json.loads((toy / "run" / "model.json").read_text())["provenance"]
    resume = ["train", config, "--resume", toy / "run", "--set", "training.epochs=4", "-q"]
    code, _, err = run_cli(capsys, *resume)
    assert code == 0, err
    record = json.loads((toy / "run" / "model.json").read_text())["provenance"]
    assert record["created"] == first["created"] and record["command"] == first["command"]
    assert [entry["command"] for entry in record["resumed"]] == [["nnctl", *map(str, resume)]]
    assert record["data"] == first["data"]


def test_file_sha256_streams_files_larger_than_a_chunk(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(int(2.5 * 2**20))
    (tmp_path / "big.bin").write_bytes(data)
    assert file_sha256(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty.bin").write_bytes(b"")
    assert file_sha256(tmp_path / "empty.bin") == hashlib.sha256(b"").hexdigest()


# ----------------------------------------------------------------------------- eval on the training file


@pytest.fixture
def trained(toy: Path) -> Path:
    config = nnctl.load_config(write_config(toy / "toy.yaml", toy_config()))
    return train(config, out=toy / "run").path


WARNING = "is byte-identical to the file"


def test_eval_warns_on_the_training_file_and_a_copy_of_it(
    trained: Path, toy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(toy / "train.csv", toy / "copy.csv")
    for csv in (toy / "train.csv", toy / "copy.csv"):
        code, out, err = run_cli(capsys, "eval", trained, csv, "--json")
        assert code == 0
        assert json.loads(out)["n_samples"] == 40  # stdout stays one JSON object
        assert f"warning: {csv} {WARNING} {trained} trained on" in " ".join(err.split())
        assert "training scores" in err


def test_eval_is_silent_on_other_data(trained: Path, toy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (toy / "train.csv").read_text()
    at = text.index("\n") + 3  # a digit of the first row's first feature
    assert text[at].isdigit()
    (toy / "same_size.csv").write_text(text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1 :])
    assert (toy / "same_size.csv").stat().st_size == (toy / "train.csv").stat().st_size
    for csv in (toy / "test.csv", toy / "valid.csv", toy / "same_size.csv"):
        code, _, err = run_cli(capsys, "eval", trained, csv)
        assert code == 0 and WARNING not in err, err


def test_eval_of_a_run_without_provenance_does_not_warn(
    trained: Path, toy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = json.loads((trained / "model.json").read_text())
    del meta["provenance"]  # a run trained before nnctl recorded it
    (trained / "model.json").write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "eval", trained, toy / "train.csv")
    assert code == 0 and WARNING not in err
