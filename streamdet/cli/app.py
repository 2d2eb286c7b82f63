"""The typer application; each sub-command lives in its own module and imports heavy deps lazily."""

from __future__ import annotations

import typer

from .._version import __version__

app = typer.Typer(
    name="streamdet",
    help="Real-time streaming sound-event detection (HTS-AT / AST on ONNX Runtime).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"streamdet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Real-time streaming sound-event detection (HTS-AT / AST on ONNX Runtime)."""


# --- sub-commands (one module each; keep imports of torch/onnxruntime inside the functions) ---
# (registered below as they land)
from . import eval_cmd  # noqa: E402

app.command("eval")(eval_cmd.eval_command)
from . import file_cmd  # noqa: E402

app.command("file")(file_cmd.file_command)
from . import listen_cmd  # noqa: E402

app.command("listen")(listen_cmd.listen_command)
from . import devices_cmd, models_cmd  # noqa: E402

app.command("devices")(devices_cmd.devices_command)
app.add_typer(models_cmd.app, name="models")
from . import train_cmd  # noqa: E402

app.command("train")(train_cmd.train_command)
from . import export_cmd  # noqa: E402

app.command("export")(export_cmd.export_command)
from . import bench_cmd  # noqa: E402

app.command("bench")(bench_cmd.bench_command)
from . import serve_cmd  # noqa: E402

app.command("serve")(serve_cmd.serve_command)
from . import batch_cmd  # noqa: E402

app.command("batch")(batch_cmd.batch_command)
