"""Shared fixtures: the real nuclei sample, and running podium's commands as a user would."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NUCLEI_CONFIG = REPO / "configs" / "nuclei" / "unet_resnet18.yml"


@pytest.fixture(scope="session")
def nuclei_data(tmp_path_factory) -> Path:
    """The DSB2018 nuclei sample as 128² tiles (117 train, 4 valid), written once per session."""
    from podium.datasets.samples import write_sample

    out = tmp_path_factory.mktemp("data") / "nuclei"
    write_sample("nuclei", out)
    return out


def run_command(*args, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    """Run a console script of the venv (catalyst-dl, podium) and capture its output."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [str(BIN / args[0]), *map(str, args[1:])],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def catalyst_run(logdir: Path, data: Path, *overrides: str, config=NUCLEI_CONFIG):
    """`catalyst-dl run` of a config with the run and data folders moved to tmp."""
    return run_command(
        "catalyst-dl", "run", "--config", config,
        f"--args/logdir={logdir}:str", f"--data/root={data}:str", *overrides,
    )
