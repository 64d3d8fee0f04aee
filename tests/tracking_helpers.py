"""Shared by the tracking tests: a tiny nuclei split, short real runs, the CSV logs."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pandas as pd
import pytest
import yaml

from conftest import BIN, REPO

FOCAL_DICE = REPO / "configs" / "nuclei" / "unet_resnet18_focal_dice.yml"
# two stages of one epoch each: steps must continue across stages
SHORT = ("--stages/warmup/num_epochs=1:int", "--stages/train/num_epochs=1:int")
# MLflow 3 reports usage to its servers unless told not to; the network here is closed
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def tiny_nuclei(nuclei_data: Path, root: Path, train: int = 8) -> Path:
    """The real nuclei tiles with `train` training tiles (one batch) and all 4 validation tiles."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("images", "masks"):
        if not (root / folder).exists():
            os.symlink(nuclei_data / folder, root / folder)
    split = pd.read_csv(nuclei_data / "split.csv")
    small = pd.concat([split[split.split == "train"].head(train), split[split.split == "valid"]])
    small.to_csv(root / "split.csv", index=False)
    return root


def _merge(base: dict, extra: dict) -> dict:
    """Catalyst's merge of a second --config file: mappings merge key by key, the rest replaces."""
    out = dict(base)
    for key, value in extra.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_maps else value
    return out


def merged_config(path: Path, *parts) -> Path:
    """FOCAL_DICE with `parts` (YAML files or dicts) merged on top, written to `path`.

    The same as `catalyst-dl run --config FOCAL_DICE part.yml` — which crashes on Python 3.11
    before podium is imported (catalyst's merge_dicts uses collections.Mapping) until compat
    covers it; then the tests can pass the files themselves."""
    config = yaml.safe_load(FOCAL_DICE.read_text())
    for part in parts:
        extra = part if isinstance(part, dict) else yaml.safe_load(Path(part).read_text())
        config = _merge(config, extra)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_subprocess(
    logdir: Path, data: Path, config: Path, *overrides, env=None, timeout=300
) -> subprocess.CompletedProcess:
    """`catalyst-dl run --config CONFIG ...` (two short epochs), as a user runs it."""
    command = [
        str(BIN / "catalyst-dl"),
        "run",
        "--config",
        str(config),
        f"--args/logdir={logdir}:str",
        f"--data/root={data}:str",
        *SHORT,
        *overrides,
    ]
    return subprocess.run(
        command,
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_in_process(logdir: Path, data: Path, config: Path, *overrides: str) -> None:
    """`catalyst-dl run --config CONFIG ...` (two short epochs) in this process (no start-up
    cost), expected to succeed."""
    from catalyst.dl.scripts.run import main, parse_args

    argv = [
        "catalyst-dl",
        "--config",
        str(config),
        f"--args/logdir={logdir}:str",
        f"--data/root={data}:str",
        *SHORT,
        *overrides,
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        args, unknown = parse_args()
        main(args, unknown)


def csv_logs(logdir: Path) -> Dict[str, pd.DataFrame]:
    """{loader: its CSV log} (`_epoch_` holds lr & co.), one row per epoch of every stage."""
    return {
        path.stem: pd.read_csv(path, float_precision="round_trip")  # exact, as written
        for path in sorted((logdir / "logs").glob("*.csv"))
    }


def files_containing(folder: Path, needle: str):
    """Every file below `folder` (hidden ones too) whose bytes contain `needle`."""
    data = needle.encode()
    return [p for p in folder.rglob("*") if p.is_file() and data in p.read_bytes()]
