"""Write data/penguins_train.csv and data/penguins_test.csv: the raw Palmer penguins table, split 80/20.

The rows are the `penguins.csv` shipped inside the `palmerpenguins` package (PyPI), copied line for
line: islands and sexes stay text, and missing values stay spelled `NA`, as in the original file, so the
example trains on the data exactly as published. The split is stratified by species: within each species,
`numpy.random.default_rng(0)` permutes the rows and 20% (rounded) go to the test file; both files keep
the original row order. Running this script twice writes identical files.

Usage: pip install palmerpenguins && python data/make_penguins.py
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent
SEED = 0
TEST_SIZE = 0.2


def main() -> None:
    text = importlib.resources.files("palmerpenguins").joinpath("data/penguins.csv").read_text(encoding="utf-8")
    header, *lines = text.splitlines()
    species = np.array([line.split(",", 1)[0] for line in lines])
    rng = np.random.default_rng(SEED)
    test = np.zeros(len(lines), dtype=bool)
    for name in sorted(set(species)):
        members = rng.permutation(np.flatnonzero(species == name))
        test[members[: round(TEST_SIZE * len(members))]] = True
    for part, chosen in (("train", ~test), ("test", test)):
        rows = [line for line, keep in zip(lines, chosen, strict=True) if keep]
        (OUT / f"penguins_{part}.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        print(f"penguins_{part}.csv: {len(rows)} rows")


if __name__ == "__main__":
    main()
