"""ONNX export (docs/reference.md#nnctl-export): a trained run as an ONNX graph that onnxruntime and others run.

The graph takes the raw `features` (float32 [N, D], the run's feature order), applies the input
normalisation, every layer in order, and ends in `probabilities` and `label` (classification) or
`predictions` (regression). It computes in float32 whatever the run's dtype. Each layer has one exporter,
registered by its name in `EXPORTERS`: a new layer exports once it has one (a test checks every registered
layer does).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from nnctl import __version__
from nnctl.data import NA_SPELLINGS
from nnctl.errors import NnctlError, RunError
from nnctl.files import write_output
from nnctl.layers import Input, LeakyReLU, Module
from nnctl.run import Run
from nnctl.tabular import Categorical
from nnctl.task import THRESHOLD

try:  # the optional extra: `nnctl export` says how to install it
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:
    raise NnctlError(f'nnctl export needs the onnx package: pip install "nnctl[onnx]" ({exc})') from None

OPSET = 17
ML_OPSET = 2  # ai.onnx.ml, for LabelEncoder (text categories)
INT64_MISSING = -(2**63)  # what an int64 categorical input passes for a missing value


@dataclass
class Graph:
    """The nodes and constants of a graph being built; each `node` returns the name of its output tensor."""

    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def name(self, hint: str) -> str:
        """A tensor name not used yet: `hint`, else `hint_2`, `hint_3`, …"""
        name, i = hint, 1
        while name in self.names:
            i += 1
            name = f"{hint}_{i}"
        self.names.add(name)
        return name

    def constant(self, value: Any, hint: str, dtype: Any = np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        """Append one `op` node; its output is named `hint` when that is still free (graph outputs always are)."""
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(f"{op}_{hint}"), **attributes))
        return out


Exporter = Callable[[Module, str, Graph], str]  # (module, input tensor, graph) → output tensor


def _identity(module: Module, x: str, graph: Graph) -> str:
    return x


def _input(module: Module, x: str, graph: Graph) -> str:
    """(x − μ) / σ with the training statistics; nothing at all for `normalize: none`."""
    module = cast(Input, module)
    if module.normalize == "none":
        return x
    state = module.state
    centred = graph.node("Sub", [x, graph.constant(state["mean"], "mean")], "centred")
    return graph.node("Div", [centred, graph.constant(state["std"], "std")], "normalized")


def _fully_connected(module: Module, x: str, graph: Graph) -> str:
    """Gemm: x W + b, W (D, K), b (K,)."""
    W, b = module.params["W"], module.params["b"].reshape(-1)
    return graph.node("Gemm", [x, graph.constant(W, "W"), graph.constant(b, "b")], "dense")


def _elementwise(op: str, **attributes: Any) -> Exporter:
    def export(module: Module, x: str, graph: Graph) -> str:
        return graph.node(op, [x], op.lower(), **attributes)

    return export


def _leaky_relu(module: Module, x: str, graph: Graph) -> str:
    """LeakyRelu with the layer's own slope α (its `alpha` option, always set once the layer is built)."""
    return graph.node("LeakyRelu", [x], "leaky_relu", alpha=float(cast(LeakyReLU, module).alpha))


# One exporter per layer, by the layer's name (`Module.name`; `sigmoid` is the `logistic` class).
EXPORTERS: dict[str, Exporter] = {
    "input": _input,
    "fully_connected": _fully_connected,
    "linear": _identity,
    "relu": _elementwise("Relu"),
    "logistic": _elementwise("Sigmoid"),
    "tanh": _elementwise("Tanh"),
    "softmax": _elementwise("Softmax", axis=-1),
    # docs/reference.md's later layers: dropout is the identity outside training; exported as soon as registered
    "dropout": _identity,
    "leaky_relu": _leaky_relu,
    "softplus": _elementwise("Softplus"),
}


def exporter(module: Module, index: int) -> Exporter:
    try:
        return EXPORTERS[module.name]
    except KeyError:
        raise RunError(
            f"layers[{index}]: layer {module.name!r} has no ONNX exporter (add one to nnctl.export.EXPORTERS)"
        ) from None


def _classification_outputs(run: Run, yhat: str, graph: Graph) -> list[Any]:
    """`probabilities` [N, C] and `label` [N] (the class labels; [N, T] of 0/1 for several 0/1 targets)."""
    task, classes = run.task, run.encoding.classes
    n = ["N"]
    if task.multilabel:
        graph.node("Identity", [yhat], "probabilities")
        graph.node("Cast", [_positive(yhat, graph)], "label", to=TensorProto.INT64)
        width = len(run.encoding.targets)
        return [
            _value("probabilities", TensorProto.FLOAT, n + [width]),
            _value("label", TensorProto.INT64, n + [width]),
        ]
    if task.targets == "binary":  # one logistic output p: [1 − p, p]; class 1 where p ≥ 0.5, as nnctl predicts
        negative = graph.node("Sub", [graph.constant(1.0, "one"), yhat], "negative")
        graph.node("Concat", [negative, yhat], "probabilities", axis=1)
        index = graph.node("Cast", [_positive(yhat, graph)], "index", to=TensorProto.INT64)
        index = graph.node("Reshape", [index, graph.constant([-1], "rows", np.int64)], "index")
    else:
        graph.node("Identity", [yhat], "probabilities")
        index = graph.node("ArgMax", [yhat], "index", axis=1, keepdims=0)
    strings = isinstance(classes[0], str)
    table = graph.constant(classes, "classes", object if strings else np.int64)
    graph.node("Gather", [table, index], "label", axis=0)
    label_type = TensorProto.STRING if strings else TensorProto.INT64
    return [_value("probabilities", TensorProto.FLOAT, n + [len(classes)]), _value("label", label_type, n)]


def _positive(yhat: str, graph: Graph) -> str:
    """p ≥ 0.5 (`THRESHOLD`), element by element: a 0/1 output's class, as nnctl predicts it."""
    return graph.node("GreaterOrEqual", [yhat, graph.constant(THRESHOLD, "threshold")], "positive")


def _value(name: str, elem_type: int, shape: list[Any]) -> Any:
    return helper.make_tensor_value_info(name, elem_type, shape)


def _encoded_inputs(run: Run, graph: Graph) -> tuple[str, list[Any]]:
    """The graph inputs (`features` for the numeric columns, one [N, 1] input per categorical column) and the
    tensor they become: missing numbers filled, categories one-hot encoded, concatenated in the network's order."""
    pre = run.preprocessing
    inputs, pieces = [], []
    taken = {"probabilities", "label", "predictions"} | ({"features"} if pre.numeric else set())
    clash = next((c.column for c in pre.categorical if c.column in taken), None)
    if clash is not None:
        raise RunError(f"cannot export: the categorical column {clash!r} has the name of another graph input or output")
    if pre.numeric:
        graph.names.add("features")
        inputs.append(_value("features", TensorProto.FLOAT, ["N", len(pre.numeric)]))
        x = "features"
        if pre.allow_missing:  # NaN → the training rows' statistic, column by column
            fills = graph.constant(np.asarray(pre.fills).reshape(1, -1), "fills")
            x = graph.node("Where", [graph.node("IsNaN", [x], "is_missing"), fills, x], "filled")
        pieces.append(x)
    for encoder in pre.categorical:
        graph.names.add(encoder.column)
        strings = any(isinstance(c, str) for c in encoder.categories) or not encoder.categories
        kind = TensorProto.STRING if strings else TensorProto.INT64
        inputs.append(_value(encoder.column, kind, ["N", 1]))
        pieces.append(_one_hot(encoder, strings, graph))
    x = pieces[0] if len(pieces) == 1 else graph.node("Concat", pieces, "encoded", axis=1)
    return x, inputs


def _one_hot(encoder: Categorical, strings: bool, graph: Graph) -> str:
    """[N, width] float: 1 in the column of each row's category (its missing-value column for a missing value:
    an empty string or an NA spelling, or INT64_MIN for whole numbers), all zeros for a value not seen in training."""
    width = encoder.width
    if strings:  # text → its column's index (−1 unseen), then compared with 0 … width − 1
        keys = [str(c) for c in encoder.categories]
        values = list(range(len(keys)))
        if encoder.missing:
            spellings = sorted({v for s in NA_SPELLINGS | {""} for v in (s, s.upper(), s.title())} - set(keys))
            keys, values = keys + spellings, values + [len(encoder.categories)] * len(spellings)
        index = graph.node(
            "LabelEncoder",
            [encoder.column],
            f"{encoder.column}_index",
            domain="ai.onnx.ml",
            keys_strings=keys,
            values_int64s=values,
            default_int64=-1,
        )
        table = graph.constant(np.arange(width), f"{encoder.column}_columns", np.int64)
    else:
        index = encoder.column
        table = graph.constant(
            encoder.categories + ([INT64_MISSING] if encoder.missing else []), "categories", np.int64
        )
    hits = graph.node("Equal", [index, table], f"{encoder.column}_is")
    return graph.node("Cast", [hits], f"{encoder.column}_one_hot", to=TensorProto.FLOAT)


def metadata(run: Run, inputs: list[Any]) -> dict[str, str]:
    """`metadata_props`: features (the `features` input's columns), the graph's `inputs` (in order) and each
    categorical input's categories, classes (one label column) or targets (JSON lists), objective, nnctl_version
    (the exporting nnctl's)."""
    enc, pre = run.encoding, run.preprocessing
    props = {"features": json.dumps(pre.numeric)}
    if pre.categorical:  # the graph's inputs, in order, and each categorical input's categories
        props["inputs"] = json.dumps([value.name for value in inputs])
        props["categories"] = json.dumps({c.column: c.categories for c in pre.categorical})
    if run.task.classification and not run.task.multilabel:
        props["classes"] = json.dumps(enc.classes)
    else:
        props["targets"] = json.dumps(enc.targets)
    props["objective"] = run.network.objective.name
    props["nnctl_version"] = __version__
    return props


def to_onnx(run: Run) -> Any:
    """The run's model as an `onnx.ModelProto` (opset 17), checked by `onnx.checker`."""
    graph = Graph()
    x, inputs = _encoded_inputs(run, graph)
    for i, module in enumerate(run.network.modules):
        x = exporter(module, i)(module, x, graph)
    if run.task.classification:
        outputs = _classification_outputs(run, x, graph)
    else:
        scale = run.encoding.target_scale
        if scale is not None:  # scale_target: ŷ σ + μ, in the targets' own units
            x = graph.node("Mul", [x, graph.constant([scale.std], "target_std")], "scaled")
            x = graph.node("Add", [x, graph.constant([scale.mean], "target_mean")], "unscaled")
        graph.node("Identity", [x], "predictions")
        outputs = [_value("predictions", TensorProto.FLOAT, ["N", len(run.encoding.targets)])]
    name = str(run.meta.get("name") or run.path.name)
    body = helper.make_graph(graph.nodes, name, inputs, outputs, graph.initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    model = helper.make_model(
        body,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),  # the oldest runtime that knows opset 17 can load it
        producer_name="nnctl",
        producer_version=__version__,
        doc_string=f"nnctl run {name}: {run.network.objective.name}, trained in {run.network.dtype}",
    )
    helper.set_model_props(model, metadata(run, inputs))
    onnx.checker.check_model(model, full_check=True)
    return model


def export_run(run: Run, path: Path) -> dict[str, Any]:
    """Write the run's ONNX model to `path` (atomically); returns its opset, inputs and outputs (name → [type, shape])
    for the command's message."""
    model = to_onnx(run)
    write_output(Path(path), model.SerializeToString(), "ONNX model")
    return {"opset": OPSET, "inputs": _signature(model.graph.input), "outputs": _signature(model.graph.output)}


def _signature(values: Any) -> dict[str, Any]:
    """name → [element type, shape] of graph inputs or outputs, e.g. {"label": ["string", ["N"]]}."""
    out = {}
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        out[value.name] = [TensorProto.DataType.Name(tensor.elem_type).lower(), shape]
    return out
