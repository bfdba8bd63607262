"""The penguins example's test accuracy next to a scikit-learn pipeline's, on the same raw files.

nnctl: `nnctl train configs/penguins.yaml --set seed=S` for S = 0 … 4; its test_metrics.json's accuracy on
data/penguins_test.csv (the best weights, as early stopping restores them).

scikit-learn: the usual pipeline on the same files, read with pandas' defaults (so `NA` is missing):
SimpleImputer(median) + StandardScaler on the numeric columns, SimpleImputer(most_frequent) + OneHotEncoder
(handle_unknown="ignore") on island and sex, then MLPClassifier with the same network (one hidden layer of
16 ReLU units, Adam, learning rate 0.01, batch 16, early stopping on a 20% validation split, at most 200
epochs), random_state=S.

The figure is the median over the five seeds (each seed's accuracy is listed too). scikit-learn is needed
here only (`pip install "nnctl[bench]"`); nnctl never imports it.

    python benchmarks/bench_penguins.py            # seeds 0-4
    python benchmarks/bench_penguins.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "penguins.yaml"
TRAIN, TEST = ROOT / "data" / "penguins_train.csv", ROOT / "data" / "penguins_test.csv"
TARGET, CATEGORICAL = "species", ["island", "sex"]


def nnctl_accuracy(seed: int, work: Path) -> float:
    """Train the example with this seed and read its test accuracy from test_metrics.json."""
    out = work / f"nnctl-{seed}"
    command = [sys.executable, "-m", "nnctl", "train", str(CONFIG), "--set", f"seed={seed}", "--out", str(out)]
    subprocess.run([*command, "--quiet"], check=True)
    return float(json.loads((out / "test_metrics.json").read_text())["accuracy"])


def sklearn_accuracy(seed: int) -> float:
    """The scikit-learn pipeline trained on the training file, scored on the test file."""
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, test = pd.read_csv(TRAIN), pd.read_csv(TEST)
    numeric = [c for c in train.columns if c not in [TARGET, *CATEGORICAL]]
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                CATEGORICAL,
            ),
        ]
    )
    network = MLPClassifier(
        hidden_layer_sizes=(16,),
        activation="relu",
        solver="adam",
        learning_rate_init=0.01,
        batch_size=16,
        max_iter=200,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=20,
        random_state=seed,
    )
    model = make_pipeline(columns, network)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train.drop(columns=TARGET), train[TARGET])
    return float((model.predict(test.drop(columns=TARGET)) == test[TARGET]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        ours = [nnctl_accuracy(seed, Path(work)) for seed in args.seeds]
    theirs = [sklearn_accuracy(seed) for seed in args.seeds]
    rows = len(pd.read_csv(TEST))
    print(f"test accuracy on {TEST.name} ({rows} rows), seeds {args.seeds}")
    for name, values in (("nnctl (configs/penguins.yaml)", ours), ("scikit-learn pipeline + MLPClassifier", theirs)):
        each = ", ".join(f"{v:.4f}" for v in values)
        print(f"  {name:40s} median {statistics.median(values):.4f}  ({each})")


if __name__ == "__main__":
    main()
