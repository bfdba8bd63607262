"""What makes the core ready to grow: a layer, objective or optimizer is one class plus one registry line;
the network knows training from evaluation mode; callbacks override only what they need; a run's result
is small and picklable; the library stays short and lazy to import."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
import yaml
from helpers import run_cli, toy_config, write_config, write_csv
from pydantic import Field

from nnctl.config import load_config
from nnctl.experiment import TrainResult, train
from nnctl.layers import LAYERS, Activation, BuildContext, Module
from nnctl.optimizers import OPTIMIZERS, Momentum
from nnctl.run import load_run
from nnctl.schema import Schema
from nnctl.train import Callback, TrainingState

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "train.csv", 60, seed=1)
    write_csv(tmp_path / "valid.csv", 40, seed=2)
    return tmp_path


# ----------------------------------------------------------------------------- one class + one registry line


class Scale(Activation):
    """y = factor · x: a throwaway layer with one option, registered the way a real one is."""

    name = "scale"

    class Options(Schema):
        factor: float = Field(2.0, gt=0)

    def __init__(self, factor: float = 2.0, epsilon: float = 1e-7) -> None:
        super().__init__(epsilon)
        self.factor = factor

    def activate(self, z: np.ndarray) -> np.ndarray:
        return self.factor * z

    def gradient(self) -> np.ndarray:
        return np.full_like(self._z, self.factor)

    def config(self) -> dict[str, Any]:
        return {"factor": self.factor}


def test_a_new_layer_is_one_class_and_one_registry_line(
    toy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(LAYERS, "scale", Scale)  # the one registry line
    layers = [{"input": {}}, {"fully_connected": {"units": 4}}, {"scale": {"factor": 0.5}}, "tanh"]
    config = toy_config(layers=[*layers, {"fully_connected": {"units": 2}}, "softmax"])
    path = write_config(toy / "scale.yaml", config)
    result = train(load_config(path), out=toy / "run")
    saved = yaml.safe_load((result.path / "config.yaml").read_text())
    assert saved["layers"][2] == {"scale": {"factor": 0.5}}
    run = load_run(result.path)  # rebuilt from model.json through the same schema
    assert isinstance(run.network.modules[2], Scale) and run.network.modules[2].factor == 0.5
    code, out, err = run_cli(capsys, "gradcheck", path, "--json")
    assert code == 0, err
    # its options are validated by its own schema, with the usual messages
    bad = write_config(toy / "bad.yaml", config | {"layers": [*layers[:2], {"scale": {"factor": -1, "facter": 1}}]})
    code, out, err = run_cli(capsys, "summary", bad)
    assert code == 2
    assert "layers[2].scale.factor: expected a positive number, got -1" in err
    assert "layers[2].scale.facter: unknown key (did you mean 'factor'?)" in err


class Nesterov(Momentum):
    """A throwaway optimizer with an option of its own."""

    name = "nesterov"

    class Options(Momentum.Options):
        name: Literal["nesterov"]  # type: ignore[assignment]
        dampening: float = Field(0.0, ge=0, lt=1)

    def __init__(self, learning_rate: float, momentum: float = 0.9, dampening: float = 0.0, **shared: Any) -> None:
        super().__init__(learning_rate, momentum, **shared)
        self.dampening = dampening


@pytest.mark.parametrize("name", [*OPTIMIZERS, "nesterov"])
def test_shared_and_own_optimizer_keys_are_validated_and_saved(
    toy: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setitem(OPTIMIZERS, "nesterov", Nesterov)
    optimizer = {"name": name, "learning_rate": 0.05, "weight_decay": 0.001}  # weight_decay: every optimizer's
    if name == "nesterov":
        optimizer["dampening"] = 0.1
    result = train(load_config(write_config(toy / "c.yaml", toy_config(optimizer=optimizer))), out=toy / "run")
    saved = yaml.safe_load((result.path / "config.yaml").read_text())["optimizer"]
    assert saved["name"] == name and saved["weight_decay"] == 0.001
    assert saved.get("dampening") == (0.1 if name == "nesterov" else None)


def test_another_optimizers_key_names_its_owner(toy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(toy / "c.yaml", toy_config(optimizer={"name": "momentum", "beta2": 0.9}))
    code, _, err = run_cli(capsys, "summary", path)
    assert code == 2 and "optimizer.beta2: only used by adam, but optimizer.name is 'momentum'" in err


# ----------------------------------------------------------------------------- training and evaluation modes


class ModeProbe(Module):
    """An identity that records the network mode of every forward pass."""

    name = "mode_probe"
    seen: ClassVar[list[bool]] = []

    @classmethod
    def build(cls, width: int, options: Any, context: BuildContext) -> Module:
        return cls()

    def forward(self, x: np.ndarray) -> np.ndarray:
        ModeProbe.seen.append(self.training)
        return x

    def backward(self, delta: np.ndarray) -> np.ndarray:
        return delta


def test_training_mode_for_batches_evaluation_mode_everywhere_else(
    toy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(LAYERS, "mode_probe", ModeProbe)
    layers = ["input", {"fully_connected": {"units": 4}}, "mode_probe", "tanh", {"fully_connected": {"units": 2}}]
    path = write_config(
        toy / "p.yaml", toy_config(layers=[*layers, "softmax"], training={"epochs": 2, "batch_size": 20})
    )
    ModeProbe.seen.clear()
    result = train(load_config(path), out=toy / "run")
    # per epoch: 3 training batches, then the validation pass
    assert ModeProbe.seen == [True, True, True, False] * 2
    for command in (["eval", result.path, "valid.csv"], ["predict", result.path, "valid.csv"], ["gradcheck", path]):
        ModeProbe.seen.clear()
        code, _, err = run_cli(capsys, *command)
        assert code == 0, err
        assert ModeProbe.seen and not any(ModeProbe.seen), command
    ModeProbe.seen.clear()
    run_cli(capsys, "summary", path)
    assert not any(ModeProbe.seen)


def test_backward_params_fills_the_same_gradients_as_backward(toy: Path) -> None:
    from nnctl.experiment import set_up

    setup = set_up(load_config(write_config(toy / "c.yaml", toy_config())))
    net, X, Y = setup.network, setup.train.X[:7], setup.train.Y[:7]
    net.backward(net.objective.gradient(Y, net.forward(X)))
    full = {name: g.copy() for name, _, g in net.parameters()}
    for _, _, g in net.parameters():
        g[...] = np.nan
    net.backward_params(net.objective.gradient(Y, net.forward(X)))
    for name, _, g in net.parameters():
        assert np.array_equal(g, full[name]), name


# ----------------------------------------------------------------------------- callbacks and results


class EpochsOnly(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_end(self, record: dict[str, Any], state: TrainingState) -> None:
        self.epochs.append(record["epoch"])


def test_a_callback_needs_only_the_hooks_it_uses(toy: Path) -> None:
    callback = EpochsOnly()
    train(load_config(write_config(toy / "c.yaml", toy_config())), out=toy / "run", callback=callback)
    assert callback.epochs == [1, 2, 3, 4, 5]


def test_the_result_of_a_run_is_small_and_picklable(toy: Path) -> None:
    result = train(load_config(write_config(toy / "c.yaml", toy_config())), out=toy / "run")
    again = pickle.loads(pickle.dumps(result))
    assert isinstance(again, TrainResult) and again == result
    assert (again.status, again.epoch, len(again.history)) == ("epochs", 5, 5)
    assert len(pickle.dumps(result)) < 5_000


def test_periodic_saves_never_rewrite_the_config(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnctl.checkpoint
    import nnctl.experiment
    import nnctl.run

    writes: list[str] = []
    real = nnctl.run.atomic_write
    for module in (nnctl.run, nnctl.checkpoint):
        monkeypatch.setattr(module, "atomic_write", lambda path, data: (writes.append(path.name), real(path, data)))
    monkeypatch.setattr(nnctl.experiment, "SAVE_EVERY_SECONDS", -1.0)  # save after every batch
    train(load_config(write_config(toy / "c.yaml", toy_config())), out=toy / "run")
    assert writes.count("config.yaml") == 1
    # the first save, one after each batch but an epoch's last, one after each epoch but the last, the final one
    assert writes.count("checkpoint.npz") == 1 + 5 * 7 + 4 + 1
    assert writes.count("model.npz") == writes.count("history.csv") == writes.count("checkpoint.npz")


# ----------------------------------------------------------------------------- short functions, lazy start-up


def test_no_library_function_is_longer_than_60_lines() -> None:
    long = []
    for path in sorted((ROOT / "nnctl").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_help_and_version_import_neither_pandas_nor_pydantic() -> None:
    probe = (
        "import sys\nfrom nnctl.cli import main\n"
        "for args in (['--help'], ['--version']):\n    main(args)\n"
        "print(sorted(m for m in ('pandas', 'pydantic', 'numpy', 'yaml') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_stop_requested_before_fit_is_honoured(toy: Path) -> None:
    """A Ctrl-C while the run directory is first written (before fit starts) stops training before any batch."""
    from nnctl.experiment import set_up
    from nnctl.train import Trainer

    setup = set_up(load_config(write_config(toy / "c.yaml", toy_config())))
    trainer = Trainer(setup.network, setup.optimizer, setup.config.training, setup.shuffle_rng)
    trainer.request_stop()
    state = trainer.fit(setup.train, setup.validation)
    assert (state.stop_reason, state.epoch, state.batch, state.seen) == ("interrupted", 0, 0, 0)
    assert trainer.fit(setup.train, setup.validation, state).stop_reason == "epochs"  # the request was for that fit


def test_batches_give_the_targets_as_they_are_and_the_scaled_ones_to_learn(toy: Path) -> None:
    """With data.scale_target the loss is reported against the targets themselves, not a scaled round trip."""
    from nnctl.data import Dataset
    from nnctl.network import Network, build_modules
    from nnctl.objectives import SquaredError
    from nnctl.tabular import TargetScale
    from nnctl.train import Batches

    rng = np.random.default_rng(0)
    Y = rng.normal(50_000, 12_345.678, size=(40, 1)) + rng.random((40, 1))
    data = Dataset(rng.normal(size=(40, 3)), Y, "mem")
    scale = TargetScale.fit(Y, None)
    network = Network(build_modules([("fully_connected", {"units": 1})], 3), SquaredError())
    batches = Batches(network, data, 8, scale)
    index = np.array([5, 3, 30, 1])
    x, y, t, w = batches.gather(index)
    assert y.tobytes() == Y[index].tobytes() and w is None
    assert t.tobytes() == scale.scale(Y)[index].tobytes()
