"""The `nnctl` console script: the CLI is imported here, so a Ctrl-C during start-up exits 130 quietly."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from nnctl.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    cli_main()
