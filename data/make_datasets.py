"""Write the train/test CSV splits used by nnctl's examples and tests.

Every dataset comes from the copy bundled with scikit-learn (``load_*``,
never ``fetch_*``), so nothing is downloaded. Splits use
``train_test_split(test_size=0.2, random_state=0)``, stratified by class
for classification and by target decile for regression (so the test split
covers the target's whole range), and running this script twice writes
identical files.

scikit-learn is needed only here; nnctl itself never imports it.

Usage: pip install scikit-learn && python data/make_datasets.py
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sklearn import datasets
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent
SEED = 0
TEST_SIZE = 0.2


def snake(name: str) -> str:
    """'mean concave points' -> 'mean_concave_points'; 'od280/od315_x' -> 'od280_od315_x'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def iris() -> pd.DataFrame:
    b = datasets.load_iris()
    cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    df = pd.DataFrame(b.data, columns=cols)
    df["species"] = b.target_names[b.target]
    return df


def breast_cancer() -> pd.DataFrame:
    b = datasets.load_breast_cancer()  # sklearn: 0 = malignant, 1 = benign
    df = pd.DataFrame(b.data, columns=[snake(c) for c in b.feature_names])
    df["diagnosis"] = b.target_names[b.target]  # strings; sorted: benign, malignant
    return df


def diabetes() -> pd.DataFrame:
    b = datasets.load_diabetes(scaled=False)
    df = pd.DataFrame(b.data, columns=b.feature_names)
    df["progression"] = b.target
    return df


def digits() -> pd.DataFrame:
    b = datasets.load_digits()
    df = pd.DataFrame(b.data.astype(int), columns=[f"pixel_{i}" for i in range(64)])
    df["digit"] = b.target.astype(int)
    return df


def wine() -> pd.DataFrame:
    b = datasets.load_wine()
    df = pd.DataFrame(b.data, columns=[snake(c) for c in b.feature_names])
    df["cultivar"] = b.target_names[b.target]
    return df


# name -> (loader, target column, stratify?): classes, or deciles of a numeric target
SPLITS: dict[str, tuple[Callable[[], pd.DataFrame], str, bool]] = {
    "iris": (iris, "species", True),
    "breast_cancer": (breast_cancer, "diagnosis", True),
    "diabetes": (diabetes, "progression", True),
    "digits": (digits, "digit", True),
    "wine": (wine, "cultivar", True),
}


def write(df: pd.DataFrame, filename: str) -> None:
    """Write without the index; floats keep full (round-trip) precision."""
    df.to_csv(OUT / filename, index=False)
    print(f"{filename}: {len(df)} rows")


def strata(target: pd.Series) -> pd.Series:
    """Class labels as they are; a float target binned into its deciles."""
    if pd.api.types.is_float_dtype(target):
        return pd.qcut(target, 10, labels=False, duplicates="drop")
    return target


def main() -> None:
    for name, (load, target, stratify) in SPLITS.items():
        df = load()
        train, test = train_test_split(
            df,
            test_size=TEST_SIZE,
            random_state=SEED,
            stratify=strata(df[target]) if stratify else None,
        )
        write(train, f"{name}_train.csv")
        write(test, f"{name}_test.csv")

    xor = pd.DataFrame({"x1": [0, 0, 1, 1], "x2": [0, 1, 0, 1], "y": [0, 1, 1, 0]})
    write(xor, "xor.csv")


if __name__ == "__main__":
    main()
