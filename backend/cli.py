"""`python -m backend <command>`: one module per command under backend/commands/.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; its one-line help is
in COMMANDS here. Modules are imported only when their command runs, so `--help` stays fast and
no command pays for another's imports (bpy, torch, pycuda).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import UserError

COMMANDS = {
    "generate": "Render a dataset (G-buffer + Cycles ground truth) with Blender",
    "example": "Fetch the example face and build its .blend scene",
    "train": "Train one network per tile-hash bucket and write a weight bank",
    "render": "Shade a G-buffer with a weight bank",
    "report": "Write the HTML quality report of a bank against a dataset",
    "bench": "Print renderer speed figures",
    "bench-dataset": "Print dataset generation speed and memory figures",
    "bench-cluster": "Print local vs local-Ray-cluster dataset generation figures",
    "serve": "Run the local HTTP service the Blender add-on talks to",
    "addon": "Build the installable Blender extension zip",
    "demo": "Generate, train and report on the example face",
}


def _module(name: str):
    return importlib.import_module("backend.commands." + name.replace("-", "_"))


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            _module(name).add_arguments(cmd_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(_module(args.command).run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, keep its traceback
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
