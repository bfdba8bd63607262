"""The `nnctl` command: parse arguments, call the library, render results, map errors to exit codes.

Exit codes (docs/reference.md#command-line): 0 success; 1 the work failed (gradient check,
divergence); 2 usage, config or data error; 130 interrupted. Library modules are imported inside
each command, so `nnctl --help` starts without numpy, pandas or pydantic.
"""

from __future__ import annotations

import importlib
import json
import shlex
import signal
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from nnctl import __version__
from nnctl.cells import MAX_CLASSES_SHOWN, finite, plural
from nnctl.errors import DivergenceError, NnctlError
from nnctl.interrupt import Interrupted

if TYPE_CHECKING:
    from nnctl.run import Run


def examples(*lines: str) -> str:
    """A command's help epilog: real examples, kept as written (click's \\b stops it rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# Options several commands share, declared once.
SetOption = Annotated[
    list[str], typer.Option("--set", metavar="KEY=VALUE", help="Override a config key: --set training.epochs=5.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON value on stdout and nothing else there.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]


app = typer.Typer(
    name="nnctl",
    help="Train small neural networks written in NumPy from YAML configs.",
    epilog=(
        "\b\nExit codes: 0 success; 1 the work failed (a gradient check, a diverging run);\n"
        "2 a usage, config or data error; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).\n"
        "Add --debug to any command to see the traceback of an internal error.\n"
        "Reference: docs/reference.md"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags shown as flags, fits narrow terminals
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _print_json(value: Any) -> None:
    """One JSON value on stdout: NaN and ±inf become null (bare NaN is not JSON); lists of numbers stay on one line."""
    sys.stdout.write(to_json(value) + "\n")


def to_json(value: Any) -> str:
    """Indented JSON whose innermost lists stay on one line, so a large matrix grows by its size, not 10× that."""
    return _indented(finite(value), "")


def _indented(value: Any, indent: str) -> str:
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(str(k))}: {_indented(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + _indented(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, default=str, allow_nan=False)


def _argv(ctx: typer.Context) -> list[str]:
    """The command line as `main` received it (`["nnctl", "train", ...]`): the run's provenance, the lock's holder."""
    argv = ctx.obj.get("argv") if isinstance(ctx.obj, dict) else None
    return list(argv) if argv is not None else ["nnctl", *sys.argv[1:]]


def _version(value: bool) -> None:
    if value:
        out.print(f"nnctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    """Train, evaluate and inspect NumPy neural networks."""


@app.command(
    epilog=examples(
        "nnctl train configs/iris.yaml",
        "nnctl train configs/digits.yaml --set training.epochs=50 --out runs/digits-50",
        "nnctl train --resume runs/digits",
    )
)
def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="YAML config file (with --resume: the run's own).")
    ] = None,
    set_: SetOption = [],  # noqa: B006
    out_dir: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Run directory (default: OUTPUT/NAME).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the run there (never anything but an nnctl run).")
    ] = False,
    resume: Annotated[
        Path | None, typer.Option("--resume", metavar="RUN", help="Continue the run in this directory.")
    ] = None,
    quiet: QuietOption = False,
    log_every: Annotated[
        int | None,
        typer.Option("--log-every", min=1, metavar="N", help="Not on a terminal: a line every N epochs (~100 lines)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, metavar="N", help="BLAS threads (default: all cores).")
    ] = None,
) -> None:
    """Train a network and write its run directory."""
    from nnctl.config import load_config
    from nnctl.experiment import train as train_run
    from nnctl.render import TrainingDisplay, training_summary
    from nnctl.threads import blas_threads

    if resume is not None and out_dir is not None:
        raise typer.BadParameter("give either --resume RUN (continue that run) or --out DIR (a new run), not both")
    if config is None and resume is None:
        raise typer.BadParameter("give a CONFIG to train, or --resume RUN to continue a run")
    cfg = load_config(config if config is not None else Path(resume or ".") / "config.yaml", set_)
    with TrainingDisplay(out, quiet, log_every) as display, blas_threads(threads):  # the display closes itself
        result = train_run(
            cfg, out=out_dir, force=force, resume=resume, callback=display, handle_signals=True, command=_argv(ctx)
        )
    if result.status == "interrupted":
        where = (
            f"in epoch {result.epoch + 1} after batch {result.batch}" if result.batch else f"after epoch {result.epoch}"
        )
        err.print(f"interrupted {where}; checkpoint saved in {result.path}", markup=False)
        err.print(f"resume with: {shlex.join(['nnctl', 'train', '--resume', str(result.path)])}", markup=False)
        raise typer.Exit(128 + (result.signal or signal.SIGINT))
    if not quiet:
        out.print(training_summary(result, out.width))
        out.print(f"saved to {result.path}", markup=False, soft_wrap=True)


@app.command(
    "eval",
    epilog=examples("nnctl eval runs/iris data/iris_test.csv", "nnctl eval runs/digits data/digits_test.csv --json"),
)
def evaluate(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    csv: Annotated[Path, typer.Argument(metavar="DATA", help="Labelled .csv, .csv.gz or .parquet to evaluate on.")],
    as_json: JsonOption = False,
    per_class: Annotated[
        bool, typer.Option("--per-class", help=f"The per-class table even for more than {MAX_CLASSES_SHOWN} classes.")
    ] = False,
) -> None:
    """Loss and metrics of a trained model on held-out data."""
    from nnctl.loading import read_table
    from nnctl.provenance import is_training_file
    from nnctl.render import evaluation_tables

    model = _load(run)
    result = model.evaluate(read_table(csv, "DATA"), str(csv), _warn)
    if is_training_file(model.meta, csv):
        _warn(f"{csv} is byte-identical to the file {run} trained on; these are training scores, not held-out ones")
    if as_json:
        _print_json(result)
        return
    for table in evaluation_tables(result, f"{run} on {csv}", per_class):
        out.print(table)


def _warn(message: str) -> None:
    """A warning from the library (values not seen in training, a config's, an unreadable run), on stderr."""
    err.print(f"warning: {message}", markup=False)


def _read_input(csv: Path) -> Any:
    """The data file at `csv`, or a CSV on standard input for `-` (kept in a temporary file while it is parsed)."""
    from nnctl.loading import read_table

    if str(csv) != "-":
        return read_table(csv, "DATA")
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".csv") as copy:
        copy.write(sys.stdin.buffer.read())
        copy.flush()
        return read_table(Path(copy.name), "standard input")


def _load(run: Path) -> Run:
    """The trained model in `run`, after a note on stderr if its training did not finish."""
    from nnctl.run import load_run

    model = load_run(run)
    _note_unfinished(model.meta, run)
    return model


def _note_unfinished(meta: dict[str, Any], run: Path) -> None:
    """eval, predict and plot work on a run in progress (or interrupted); they say so on stderr."""
    status = meta.get("status")
    if status in ("training", "interrupted", "diverged"):
        epochs = meta.get("epochs_completed", 0)
        what = {"training": "still training (or was killed)", "interrupted": "interrupted", "diverged": "diverged"}
        err.print(
            f"note: {run} is unfinished ({what[status]}, {plural(epochs, 'epoch')} done); using its latest weights",
            markup=False,
        )


@app.command(
    epilog=examples(
        "nnctl predict runs/iris data/iris_test.csv -o predictions.csv",
        "cat new.csv | nnctl predict runs/iris - > predictions.csv",
    )
)
def predict(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    csv: Annotated[
        Path, typer.Argument(metavar="DATA", help=".csv, .csv.gz or .parquet with the model's features; - for stdin.")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Write to this CSV (default: stdout).")
    ] = None,
) -> None:
    """Predictions for every row of a data file (or of a CSV on standard input), as CSV."""
    from nnctl.files import write_output

    model = _load(run)
    frame = _read_input(csv)
    text = model.with_predictions(frame, str(csv), _warn).to_csv(index=False)
    if output is None:
        sys.stdout.write(text)
    else:
        write_output(output, text.encode(), "predictions")
        err.print(f"wrote {len(frame)} predictions to {output}", markup=False)


@app.command(
    epilog=examples(
        "nnctl gradcheck", "nnctl gradcheck configs/iris.yaml --rows 4", "nnctl gradcheck configs/xor.yaml --json"
    )
)
def gradcheck(
    config: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="YAML config (default: every built-in module).")
    ] = None,
    set_: SetOption = [],  # noqa: B006
    rows: Annotated[int | None, typer.Option("--rows", min=1, help="Rows of training data to check on (8).")] = None,
    eps: Annotated[
        float, typer.Option("--eps", min=1e-12, max=1.0, help="Finite-difference step h (central differences).")
    ] = 1e-6,
    as_json: JsonOption = False,
) -> None:
    """Analytic gradients against central finite differences, in float64."""
    from nnctl import gradcheck as gc
    from nnctl.render import gradcheck_table

    rows_given, rows = rows is not None, rows or 8
    if config is None:
        checks = gc.check_builtin(rows, eps)
    else:
        from nnctl.config import load_config

        checks, used = gc.check_config(load_config(config, set_), rows, eps)
        if rows_given and used < rows:
            err.print(f"note: the training data has {used} rows; checked on all {used} (--rows {rows})", markup=False)
    passed = all(c.passed for c in checks)
    if as_json:
        _print_json({"passed": passed, "checks": [c.to_dict() for c in checks]})
    else:
        out.print(gradcheck_table(checks, eps))
        failed = sum(not c.passed for c in checks)
        out.print(
            f"[green]all {len(checks)} checks passed[/]"
            if passed
            else f"[bold red]{failed} of {len(checks)} checks failed[/]"
        )
    if not passed:
        raise typer.Exit(EXIT_FAILED)


@app.command(epilog=examples("nnctl summary configs/iris.yaml", "nnctl summary configs/digits.yaml --json"))
def summary(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="YAML config file.")],
    set_: SetOption = [],  # noqa: B006
    as_json: JsonOption = False,
) -> None:
    """Validate a config and its data; print the layer table and the backprop chain of Jacobian shapes."""
    from nnctl.config import load_config
    from nnctl.experiment import set_up
    from nnctl.render import summary_parts

    setup = set_up(load_config(config, set_))
    for warning in setup.warnings:
        _warn(warning)
    document = setup.summary()
    if as_json:
        _print_json(document)
        return
    for part in summary_parts(document):
        out.print(part)


@app.command(
    epilog=examples("nnctl plot runs/iris", "nnctl plot runs/iris -o iris.pdf", "nnctl plot runs/iris runs/iris-2")
)
def plot(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="One or more run directories.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Image: .png, .pdf or .svg (default: RUN/learning_curves.png; several runs: ./learning_curves.png).",
        ),
    ] = None,
) -> None:
    """Learning curves of a run as a PNG; several runs overlaid, one colour each."""
    from nnctl.plot import plot_curves, read_curves

    curves = read_curves(runs)  # each run's model.json and history.csv, read once
    for run, c in zip(runs, curves, strict=True):
        _note_unfinished(c.record.meta, run)
    path = plot_curves(curves, output)
    out.print(f"wrote {path}", markup=False)


@app.command(
    epilog=examples(
        "nnctl init data/iris_train.csv --target species",
        "nnctl init mydata.csv --target price -o price.yaml && nnctl train price.yaml",
    )
)
def init(
    data: Annotated[Path, typer.Argument(metavar="DATA.csv", help="Your data: a CSV with a header line.")],
    target: Annotated[str, typer.Option("--target", "-t", help="The column to predict.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="Config file to write (default: DATA's name, .yaml)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config file.")] = False,
) -> None:
    """Write a commented starter config for your CSV that trains as it is."""
    from nnctl.init import write_starter

    path = write_starter(data, target, output, force)
    err.print(f"wrote {path}; train it with: nnctl train {shlex.quote(str(path))}", markup=False)


@app.command("export", epilog=examples("nnctl export runs/iris", "nnctl export runs/iris -o iris.onnx --format onnx"))
def export(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="File (default: RUN/model.onnx).")
    ] = None,
    format_: Annotated[str, typer.Option("--format", metavar="FORMAT", help="File format: onnx.")] = "onnx",
) -> None:
    """The trained model as an ONNX file, for onnxruntime and other runtimes (needs the onnx extra)."""
    if format_ != "onnx":
        raise typer.BadParameter(f"unknown format {format_!r}; expected onnx", param_hint="--format")
    from nnctl.export import export_run  # raises a one-line error naming the install command without onnx

    model = _load(run)
    path = output if output is not None else run / "model.onnx"
    signature = export_run(model, path)
    shapes = {
        side: ", ".join(
            f"{name} {kind}[{', '.join(map(str, shape))}]" for name, (kind, shape) in signature[side].items()
        )
        for side in ("inputs", "outputs")
    }
    inputs = "inputs" if len(signature["inputs"]) > 1 else "input"
    described = f"{inputs} {shapes['inputs']}; outputs {shapes['outputs']}"
    out.print(f"wrote {path} (ONNX opset {signature['opset']}): {described}", markup=False, soft_wrap=True)


@app.command(
    "runs",
    epilog=examples("nnctl runs", "nnctl runs runs/iris-sweep --sort=-validation_accuracy", "nnctl runs --json"),
)
def runs_(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to look for runs, recursively.")] = Path(
        "runs"
    ),
    sort: Annotated[
        str | None,
        typer.Option("--sort", metavar="KEY", help="Order by a column or config key; --sort=-KEY for descending."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every run under DIR as one table, with the config keys that differ between them as columns."""
    from nnctl.runs import all_keys, list_runs, short_names, sort_rows, table_rows

    records, warnings = list_runs(directory)
    for warning in warnings:
        _warn(warning)
    rows, keys = table_rows(records)
    short = short_names(keys, all_keys(records))  # the table's headers, which --sort also takes
    if sort is not None:
        rows = sort_rows(rows, sort, short)
    if as_json:
        _print_json(rows)
    elif not rows:
        err.print(f"no runs under {directory} (a run is a directory with a model.json)", markup=False)
    else:
        from nnctl.render_runs import runs_table

        table, hidden = runs_table(rows, keys, short, f"{plural(len(rows), 'run')} under {directory}", out.width)
        out.print(table)
        if hidden:
            more = ", ".join(hidden[:5]) + (", …" if len(hidden) > 5 else "")
            out.print(f"not shown at this width: {more} (nnctl runs --json has every column)", markup=False)


@app.command("diff", epilog=examples("nnctl diff runs/iris runs/iris-2", "nnctl diff runs/iris runs/iris-2 --json"))
def diff(
    run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="Run directory.")],
    run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="Run directory.")],
    as_json: JsonOption = False,
) -> None:
    """Two runs side by side: the config keys that differ, best-epoch metrics, and whether the data were the same."""
    from nnctl.render_runs import diff_tables
    from nnctl.runs import diff_runs

    result = diff_runs(run_a, run_b)
    if as_json:
        _print_json(result)
        return
    for part in diff_tables(result):
        out.print(part)


cache_app = typer.Typer(
    help="The data cache: binary copies of parsed data files (.nnctl-cache/ or $NNCTL_CACHE_DIR).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls(as_json: JsonOption = False) -> None:
    """List the cache's entries: the file each came from, its shape, dtype and size on disk."""
    from nnctl.cache import cache_dir, entries
    from nnctl.cells import cache_listing

    root = cache_dir()
    found = entries(root)
    if as_json:
        _print_json({"cache": str(root), "entries": [e.to_dict() for e in found]})
    elif not found:
        out.print(f"the data cache {root} is empty", soft_wrap=True, markup=False)
    else:
        out.print(cache_listing(found, root), soft_wrap=True, markup=False)


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every entry of the cache (they are rebuilt when a file is next used)."""
    from nnctl.cache import cache_dir, clear
    from nnctl.cells import human_bytes

    root = cache_dir()
    count, freed = clear(root)
    out.print(
        f"removed {plural(count, 'entry', 'entries')} ({human_bytes(freed)}) from {root}", soft_wrap=True, markup=False
    )


class BackendName(str, Enum):
    local = "local"
    ray = "ray"


@app.command(
    epilog=examples(
        "nnctl sweep configs/digits_sweep.yaml",
        "nnctl sweep configs/digits_sweep.yaml --workers 2 --set training.epochs=50 --out runs/short",
        "nnctl sweep --resume runs/digits_sweep-sweep",
        "nnctl sweep configs/digits_sweep.yaml --backend ray --address ray-head:6379",
    )
)
def sweep(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(metavar="CONFIG", help="Config with a sweep: section (optional with --resume).")
    ] = None,
    set_: SetOption = [],  # noqa: B006
    out_dir: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Sweep directory (default: OUTPUT/NAME-sweep).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, metavar="N", help="Trials at once, locally (default: cores).")
    ] = None,
    backend: Annotated[BackendName, typer.Option("--backend", help="Where trials run.")] = BackendName.local,
    address: Annotated[
        str | None,
        typer.Option("--address", metavar="ADDR", help="Ray cluster (default: RAY_ADDRESS, else a local Ray)."),
    ] = None,
    cpus_per_trial: Annotated[
        float, typer.Option("--cpus-per-trial", min=0.01, metavar="C", help="Ray: CPUs per trial.")
    ] = 1.0,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, metavar="T", help="BLAS threads per trial (default: cores // workers)."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", metavar="DIR", help="Finish the sweep in this directory.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the sweep at --out (never anything but nnctl's).")
    ] = False,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Train every point of the config's sweep: section, in parallel; rank the results."""
    from nnctl.sweeprun import open_backend, run_sweep
    from nnctl.sweepview import SweepView

    if resume is not None and (out_dir is not None or force):
        raise typer.BadParameter("--resume finishes a sweep in its own directory: leave out --out and --force")
    plan = _sweep_plan(config, set_, resume, backend)
    with (
        open_backend(backend.value, workers, threads, address, cpus_per_trial) as runner,
        SweepView(err if as_json else out, quiet) as view,
    ):
        result = run_sweep(
            plan,
            runner,
            out=out_dir,
            force=force,
            resume=resume,
            callback=view,
            handle_signals=True,
            command=_argv(ctx),
        )
    _sweep_report(result, as_json, quiet, ["--backend", "ray"] + (["--address", address] if address else []))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _sweep_plan(config: Path | None, set_: list[str], resume: Path | None, backend: BackendName) -> Any:
    """The sweep, validated (from CONFIG, or the sweep directory being resumed)."""
    from nnctl.sweep import plan_sweep, resume_plan

    if backend is BackendName.local:
        from nnctl.sweeppool import start_server

        start_server()  # its imports overlap the validation below
    if resume is not None:
        return resume_plan(resume, config, set_)
    if config is None:
        raise typer.BadParameter("give a CONFIG with a sweep: section, or --resume DIR to finish a sweep")
    return plan_sweep(config, set_)


def _sweep_report(result: Any, as_json: bool, quiet: bool, ray_options: list[str]) -> None:
    """The ranked results (or the JSON), and after Ctrl-C the command that resumes."""
    from nnctl.sweepview import results_summary, results_table

    if as_json:
        _print_json(result.to_json())
    elif not quiet:
        if result.ranked:
            out.print(results_table(result))
        for line in results_summary(result):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.interrupted:
        again = ["nnctl", "sweep", "--resume", str(result.path)]
        if result.backend == "ray":
            again += ray_options
        err.print(f"interrupted; every running trial saved its checkpoint in {result.path}", markup=False)
        err.print(f"resume with: {shlex.join(again)}", markup=False)


def _click() -> Any:
    """The click exceptions typer raises: its own vendored copy (typer ≥ 0.20), else click itself."""
    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every outcome into one exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    click = _click()
    try:
        code = command.main(args, prog_name="nnctl", standalone_mode=False, obj={"argv": ["nnctl", *args]})
    except click.UsageError as exc:
        exc.show(file=sys.stderr)
        code = EXIT_USAGE
    except typer.Abort:
        err.print("interrupted")
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        err.print("interrupted")
        code = EXIT_INTERRUPTED
    except Interrupted as exc:
        err.print("interrupted before training started; nothing was written", markup=False)
        code = exc.exit_code
    except DivergenceError as exc:
        err.print(f"error: {exc}", markup=False)
        where = "the initial weights" if exc.epoch <= 1 else f"the weights after epoch {exc.epoch - 1}"
        err.print(f"the last good model ({where}) was kept in the run directory", markup=False)
        code = exc.exit_code
    except NnctlError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"error: {exc}", markup=False)
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show(file=sys.stderr)
        code = exc.exit_code
    except Exception as exc:  # an nnctl bug, not the user's mistake
        if debug:
            traceback.print_exc()
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        err.print("this is a bug in nnctl; run again with --debug to see the traceback", markup=False)
        code = EXIT_FAILED
    code = code if isinstance(code, int) else 0
    if argv is None:
        # The outcome is decided and everything is saved: a Ctrl-C now (one of a storm) must not turn the exit
        # into a kill by signal while the interpreter shuts down.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        sys.exit(code)
    return code
