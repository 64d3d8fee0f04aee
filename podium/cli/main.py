"""`podium` command line: one sub-command per module in podium/cli, and one per task (podium/tasks).

Each sub-command module exposes `register(subparsers)`, which adds its parser and sets
`func=callable(args) -> int|None` as the parser default. `podium predict --run RUN` of a task's
run is that task's command (`podium.cli.predict.task_command`).
"""

import argparse
import sys

from podium import interrupts, tasks
from podium.cli import predict
from podium.errors import PodiumError

SUBCOMMANDS = [
    "podium.cli.samples",
    "podium.cli.predict",
    "podium.cli.lr_find",
    "podium.cli.folds",
    "podium.cli.stats",
    "podium.cli.tune_postprocess",
    "podium.cli.cv",
    "podium.cli.submit",
    "podium.cli.report",
    "podium.cli.pseudo_label",
    "podium.cli.tile",
    "podium.cli.average",
    "podium.cli.export",
]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="podium", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).register(subparsers)
    tasks.register_commands(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        task = predict.task_command(words)  # `podium predict --run RUN` of a task's run
        args = parser.parse_args([task, *words[1:]] if task else words)
        if task:
            args.command = "predict"
        with interrupts.handled():
            return int(args.func(args) or 0)
    except PodiumError as error:
        print(f"podium: error: {error}", file=sys.stderr)
        return 1
    except interrupts.Interrupted as stop:  # Ctrl-C / SIGTERM: every file written so far is whole
        command = interrupts.command_line(None if argv is None else ["podium", *argv])
        return interrupts.report(
            f"podium {args.command}",
            stop,
            "",
            "the files written before it are complete (each file is written whole or not at "
            f"all); run the same command again: {command}",
        )


if __name__ == "__main__":
    sys.exit(main())
