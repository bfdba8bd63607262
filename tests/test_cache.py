"""The data cache: used on the second run, rebuilt when the file's bytes change or the entry is damaged, never
written with `data.cache: false`; the remembered file hashes; `nnctl cache ls` / `clear`; reopening an entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, toy_config, write_config, write_csv

from nnctl import cache, files, formats
from nnctl.errors import DataError
from nnctl.loading import load_file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def load(path: Path, root: Path | None) -> np.ndarray:
    return load_file(path, ["label"], None, np.float32, "data.train", root).X


def the_entry(root: Path) -> Path:
    (entry,) = [p for p in root.iterdir() if len(p.name) == 64]
    return entry


def test_the_second_run_maps_the_cache_and_parses_nothing(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "train.csv", 50, seed=1)
    first = load_file(path, ["label"], None, np.float32, "data.train", root)
    assert isinstance(first.X, np.memmap) and first.entry == the_entry(root)

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CSV was parsed again")

    monkeypatch.setattr(pd, "read_csv", no_parsing)
    monkeypatch.setattr(pd, "read_parquet", no_parsing)
    second = load_file(path, ["label"], None, np.float32, "data.train", root)
    assert isinstance(second.X, np.memmap) and not second.X.flags.writeable
    assert second.entry == first.entry
    np.testing.assert_array_equal(second.X, first.X)
    assert second.targets.equals(first.targets)


def test_new_bytes_with_the_same_size_and_mtime_rebuild_the_entry(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "SETTLED_SECONDS", 0.0)  # remember the hash at once, as for an old file
    path = tmp_path / "train.csv"
    path.write_text("a,b,label\n1.5,2,x\n3.5,4,y\n")
    before = os.stat(path)
    np.testing.assert_array_equal(load(path, root), [[1.5, 2], [3.5, 4]])
    assert list((root / cache.MEMO).iterdir())  # the hash was remembered
    path.write_text("a,b,label\n1.5,2,x\n3.5,5,y\n")  # one byte differs
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    np.testing.assert_array_equal(load(path, root), [[1.5, 2], [3.5, 5]])


def test_a_remembered_hash_is_used_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "SETTLED_SECONDS", 0.0)
    path, memo = tmp_path / "f.bin", tmp_path / "memo"
    path.write_bytes(b"abc")
    real = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    assert cache.file_sha256(path) == cache.file_sha256(path, memo) == real
    (note,) = memo.iterdir()
    saved = json.loads(note.read_text())
    note.write_text(json.dumps({**saved, "sha256": "f" * 64}))
    assert cache.file_sha256(path, memo) == "f" * 64  # remembered: the file is not read
    path.write_bytes(b"abd")  # same size; the change time moves
    assert cache.file_sha256(path, memo) == cache.file_sha256(path) != real


def test_a_just_written_file_is_not_remembered(tmp_path: Path) -> None:
    """Within SETTLED_SECONDS, a second change could keep every time stamp: hash it again next time."""
    path, memo = tmp_path / "f.bin", tmp_path / "memo"
    path.write_bytes(b"abc")
    cache.file_sha256(path, memo)
    assert not memo.exists()


def damage(entry: Path, how: str) -> None:
    features = entry / "features.npy"
    size = features.stat().st_size
    if how == "truncated":
        os.truncate(features, size - 4)
    elif how == "garbage":
        features.write_bytes(np.random.default_rng(0).bytes(size))
    elif how == "one-value":
        with open(features, "r+b") as file:
            file.seek(size - 3)
            file.write(b"\x7f")
    elif how == "header-shape":
        text = features.read_bytes().replace(b"(50, 3)", b"(49, 3)")
        features.write_bytes(text)
    elif how == "targets-garbage":
        (entry / "targets.npz").write_bytes(b"PK not a zip")
    elif how == "entry-json-garbage":
        (entry / "entry.json").write_text("{")
    elif how == "targets-missing":
        (entry / "targets.npz").unlink()
    elif how == "stale-key":
        meta = json.loads((entry / "entry.json").read_text())
        (entry / "entry.json").write_text(json.dumps({**meta, "key": "0" * 64}))


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "garbage",
        "one-value",
        "header-shape",
        "targets-garbage",
        "entry-json-garbage",
        "targets-missing",
        "stale-key",
    ],
)
def test_a_damaged_entry_is_rebuilt_never_trusted(tmp_path: Path, root: Path, how: str) -> None:
    path = write_csv(tmp_path / "train.csv", 50, seed=1)
    expected = np.array(load(path, root))
    entry = the_entry(root)
    damage(entry, how)
    assert cache.open_entry(entry) is None
    np.testing.assert_array_equal(load(path, root), expected)
    assert cache.open_entry(the_entry(root)) is not None  # whole again


def test_cache_false_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cache.CACHE_ENV)
    write_csv(tmp_path / "train.csv", 40, seed=1)
    write_csv(tmp_path / "valid.csv", 20, seed=2)
    config = write_config(tmp_path / "c.yaml", toy_config(data={**toy_config()["data"], "cache": False}))
    code, _, err = run_cli(capsys, "train", config, "--out", tmp_path / "run", "-q")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "run", "train.csv", "valid.csv"]


def test_the_cache_lives_in_the_working_directory_or_nnctl_cache_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_csv(tmp_path / "train.csv", 40, seed=1)
    write_csv(tmp_path / "valid.csv", 20, seed=2)
    config = write_config(tmp_path / "c.yaml", toy_config())
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv(cache.CACHE_ENV)
    assert run_cli(capsys, "train", config, "--out", tmp_path / "one", "-q")[0] == 0
    assert len(cache.entries(tmp_path / "work" / ".nnctl-cache")) == 2  # train.csv and valid.csv
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert run_cli(capsys, "train", config, "--out", tmp_path / "two", "-q")[0] == 0
    assert {e.source for e in cache.entries(tmp_path / "elsewhere")} == {
        str(tmp_path / "train.csv"),
        str(tmp_path / "valid.csv"),
    }


def test_cache_ls_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    code, out, _ = run_cli(capsys, "cache", "ls")
    assert (code, out.strip()) == (0, f"the data cache {tmp_path / 'c'} is empty")
    write_csv(tmp_path / "train.csv", 40, seed=1)
    write_csv(tmp_path / "valid.csv", 20, seed=2)
    assert run_cli(capsys, "train", write_config(tmp_path / "c.yaml", toy_config()), "--out", tmp_path / "r")[0] == 0
    code, out, _ = run_cli(capsys, "cache", "ls", "--json")
    listed = json.loads(out)
    assert listed["cache"] == str(tmp_path / "c")
    assert sorted((e["source"], e["rows"], e["columns"], e["dtype"]) for e in listed["entries"]) == [
        (str(tmp_path / "train.csv"), 40, 3, "float64"),
        (str(tmp_path / "valid.csv"), 20, 3, "float64"),
    ]
    assert all(e["bytes"] > e["rows"] * 3 * 8 for e in listed["entries"])
    code, out, _ = run_cli(capsys, "cache", "ls")
    assert code == 0 and "2 entries" in out and all(e["key"][:8] in out for e in listed["entries"])
    (tmp_path / "c" / "mine.txt").write_text("a user's file")
    code, out, _ = run_cli(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 2 entries (") and str(tmp_path / "c") in out
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["mine.txt"]  # only nnctl's own files go


def test_an_entry_is_reopened_by_another_process(tmp_path: Path, root: Path) -> None:
    """What a sweep worker does: map the copy another process made instead of parsing the file again."""
    path = write_csv(tmp_path / "train.csv", 50, seed=1)
    loaded = load_file(path, ["label"], None, np.float32, "data.train", root)
    script = (
        "import sys; from pathlib import Path; from nnctl.cache import open_entry; "
        "e = open_entry(Path(sys.argv[1])); print(e.X.shape, repr(float(e.X.astype('float64').sum())))"
    )
    done = subprocess.run([sys.executable, "-c", script, str(loaded.entry)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"(50, 3) {float(loaded.X.astype('float64').sum())!r}"


def test_two_writers_of_one_entry_leave_one_whole_entry(tmp_path: Path, root: Path) -> None:
    rows = np.arange(12, dtype=np.float64).reshape(4, 3)
    writers = [
        cache.EntryWriter(root, "a" * 64, {"source": "x", "features": ["a", "b", "c"]}, 3, np.float64) for _ in range(2)
    ]
    for writer in writers:
        with writer:
            writer.block(4)[...] = rows
            writer.commit(4)
            writer.finish({"values_0": np.zeros(4), "name_0": np.array(["y"])})
    entry = cache.open_entry(root / ("a" * 64))
    assert entry is not None
    np.testing.assert_array_equal(entry.X, rows)
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp")] == []


def test_an_unusable_cache_folder_is_a_data_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "train.csv", 10, seed=1)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(
        DataError, match=r"^data.train: cannot use the data cache folder .*a-file.*set data.cache: false"
    ):
        load(path, tmp_path / "a-file")


def test_a_file_that_changes_while_it_is_read_files_nothing(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry's key is the hash taken before parsing: rows read after a change must not be filed under it."""
    path = write_csv(tmp_path / "train.csv", 50, seed=1)
    chunks = formats.csv_chunks

    def appending(*args: Any, **kwargs: Any) -> Iterator[formats.Chunk]:
        for i, chunk in enumerate(chunks(*args, **kwargs)):
            if i == 1:
                with open(path, "a") as file:  # another program is still writing the file
                    file.write("0.5,0.5,0.5,yes\n")
            yield chunk

    monkeypatch.setattr(formats, "csv_chunks", appending)
    with pytest.raises(DataError, match=r"train.csv changed while it was being read; run again once it is written"):
        load_file(path, ["label"], None, np.float32, "data.train", root, chunk_rows=10)
    assert cache.entries(root) == []


def test_features_named_or_left_to_the_file_share_one_entry(tmp_path: Path, root: Path) -> None:
    """A resumed run's config.yaml names its features; it must find the entry its first run made."""
    path = write_csv(tmp_path / "train.csv", 50, seed=1)
    first = load_file(path, ["label"], None, np.float32, "data.train", root)
    named = load_file(path, ["label"], ["a", "b", "c"], np.float32, "data.train", root)
    assert named.entry == first.entry and len([p for p in root.iterdir() if len(p.name) == 64]) == 1
