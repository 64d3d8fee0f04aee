"""`podium` command line: one sub-command per module in podium/cli, and one per task (podium/tasks).

Each sub-command module exposes `register(subparsers)`, which adds its parser and sets
`func=callable(args) -> int|None` as the parser default. `podium predict --run RUN` of a task's
run is that task's command (`podium.cli.predict.task_command`).

A command imports only its own module: the others are listed (`podium --help`, an unknown
command's error) by name and help from SUBCOMMANDS and `tasks.COMMANDS`, so `podium --help` and
a light command start without torch or Catalyst. Those tables are the only place a command's
help (and a task command's older names) is written: `register` gets them through `Listed`.
"""

import argparse
import importlib
import sys
from typing import Optional, Sequence

from podium import interrupts, tasks
from podium.errors import PodiumError

# (module, command, help): the order of `podium --help`
SUBCOMMANDS = [
    (
        "podium.cli.samples",
        "samples",
        "write a small real annotated sample dataset (images/, masks/, split.csv)",
    ),
    (
        "podium.cli.predict",
        "predict",
        "predict masks with trained checkpoints (ensembles, TTA, tiles, submission CSV)",
    ),
    ("podium.cli.lr_find", "lr-find", "learning-rate range test of a training config"),
    (
        "podium.cli.folds",
        "folds",
        "assign images to k stratified (optionally grouped) folds: writes name,fold CSV",
    ),
    (
        "podium.cli.stats",
        "stats",
        "per-channel mean/std (raw and scaled), image sizes, class pixel frequencies -> JSON",
    ),
    (
        "podium.cli.tune_postprocess",
        "tune-postprocess",
        "grid-search threshold x min-size per class on saved probabilities; writes the "
        "inference YAML",
    ),
    (
        "podium.cli.cv",
        "cv",
        "k-fold cross-validation: trains every fold (a child process each), out-of-fold maps, "
        "cv_summary.csv",
    ),
    (
        "podium.cli.submit",
        "submit",
        "after podium cv: tune post-processing on the OOF maps, predict a test folder with the "
        "fold ensemble",
    ),
    (
        "podium.cli.report",
        "report",
        "a static HTML report of a run or podium cv directory: config, curves, per-class "
        "metrics, overlays, timings",
    ),
    (
        "podium.cli.pseudo_label",
        "pseudo-label",
        "soft labels (uint8 probabilities) for unlabeled images from a fold ensemble, with "
        "negative mining",
    ),
    (
        "podium.cli.tile",
        "tile",
        "cut georeferenced scenes (scenes.csv) into tiles: images/, masks/, split.csv",
    ),
    (
        "podium.cli.average",
        "average",
        "average the weights of a run's k best checkpoints (SWA / weight soup)",
    ),
    (
        "podium.cli.export",
        "export",
        "export a trained run (or an ensemble) to one ONNX file for onnxruntime",
    ),
]


class Listed:
    """The sub-parsers as a command's `register` sees them: `add_parser` with the help (and
    older names) its table lists for it."""

    def __init__(self, subparsers, help_text: str, aliases: Sequence[str] = ()):
        self.subparsers, self.help_text, self.aliases = subparsers, help_text, list(aliases)

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, help=self.help_text, aliases=self.aliases, **kwargs)


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """Every command's parser; with `command` (a name or alias), that one's only — the others
    by name and help, their modules not imported."""
    parser = argparse.ArgumentParser(prog="podium", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name, name, help_text in SUBCOMMANDS:
        if command is None or command == name:
            importlib.import_module(module_name).register(Listed(subparsers, help_text))
        else:
            subparsers.add_parser(name, help=help_text)
    for task, (aliases, help_text) in tasks.COMMANDS.items():
        if command is None or command == f"predict-{task}" or command in aliases:
            tasks.register_command(Listed(subparsers, help_text, aliases), task)
        else:
            subparsers.add_parser(f"predict-{task}", aliases=list(aliases), help=help_text)
    return parser


def command_word(words: Sequence[str]) -> str:
    """The command `words` name: the first that is not an option (`podium` has only -h)."""
    return next((word for word in words if not word.startswith("-")), "")


def main(argv=None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = command_word(words)
    try:
        task = None
        if command == "predict":  # `podium predict --run RUN` of a task's run
            from podium.cli import predict

            task = predict.task_command(words)
        parser = build_parser(task or command)
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
