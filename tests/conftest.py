"""Shared fixtures: the real nuclei sample, and running podium's commands as a user would."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NUCLEI_CONFIG = REPO / "configs" / "nuclei" / "unet_resnet18.yml"

# --- Disk. A training run writes ~370 MB of checkpoints (57 MB weights + 172 MB with the
# optimizer, per epoch kept), and the suite makes ~25 of them: kept to the end, they filled
# 8 GB. So a passing test's tmp_path goes at once, and the folders a module-scoped fixture
# makes with tmp_path_factory go when that fixture is torn down, unless a test of the module
# failed. pytest's tmp_path_retention_policy ("failed", in pyproject.toml) decides both:
# `-o tmp_path_retention_policy=all` keeps everything for a look afterwards. Session fixtures
# (the nuclei sample, trained_run) keep theirs to the end of the session.
_fixtures_being_set_up: list = []
_folders_of_module_fixtures: dict = {}
_modules_with_failures: set = set()


# --- Programs beyond the Python packages. `make test` installs them (scripts/test-deps.sh); a
# plain `pytest` without them stops here, before any test, instead of failing minutes later.
PROGRAMS = {"chromium": ("test_report.py", "sudo apt-get install -y chromium, or run make test")}


def pytest_collection_modifyitems(session, config, items):
    files = {item.path.name for item in items}
    for program, (needed_by, install) in PROGRAMS.items():
        if needed_by in files and shutil.which(program) is None:
            pytest.exit(
                f"{program} is not installed and tests/{needed_by} needs it: {install}",
                returncode=1,
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _fixtures_being_set_up.append(fixturedef)
    try:
        yield
    finally:
        _fixtures_being_set_up.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed:
        _modules_with_failures.add(item.path)


def pytest_fixture_post_finalizer(fixturedef, request):
    folders = _folders_of_module_fixtures.pop(id(fixturedef), [])
    policy = request.config.getini(
        "tmp_path_retention_policy"
    )  # -o tmp_path_retention_policy=all keeps all
    if policy == "none" or (policy == "failed" and request.path not in _modules_with_failures):
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


class _CleaningTempPathFactory:
    """pytest's tmp_path_factory, remembering which module-scoped fixture made each folder."""

    def __init__(self, factory):
        self._factory = factory

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        folder = self._factory.mktemp(basename, numbered)
        if _fixtures_being_set_up and _fixtures_being_set_up[-1].scope == "module":
            owner = id(_fixtures_being_set_up[-1])
            _folders_of_module_fixtures.setdefault(owner, []).append(folder)
        return folder

    def __getattr__(self, name):  # getbasetemp, and what pytest's own tmp_path reads
        return getattr(self._factory, name)


@pytest.fixture(scope="session")
def tmp_path_factory(tmp_path_factory):
    return _CleaningTempPathFactory(tmp_path_factory)


@pytest.fixture(scope="session")
def trees_geo(tmp_path_factory) -> Path:
    """`podium samples trees-geo`: the real OSBS_029 GeoTIFF, its crowns and scenes.csv."""
    from podium.datasets.samples import write_sample

    out = tmp_path_factory.mktemp("data") / "trees-geo"
    write_sample("trees-geo", out)
    return out


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
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def podium_in_process(*argv) -> tuple:
    """(exit code, stdout, stderr) of `podium ARGV…` run in this process (no start-up cost)."""
    from podium.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def catalyst_run(logdir: Path, data: Path, *overrides: str, config=NUCLEI_CONFIG):
    """`catalyst-dl run` of a config with the run and data folders moved to tmp."""
    return run_command(
        "catalyst-dl",
        "run",
        "--config",
        config,
        f"--args/logdir={logdir}:str",
        f"--data/root={data}:str",
        *overrides,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, nuclei_data):
    """One short real run of the nuclei config: 1 frozen-encoder epoch + 3 full epochs."""
    logdir = tmp_path_factory.mktemp("runs") / "nuclei"
    result = catalyst_run(
        logdir,
        nuclei_data,
        "--stages/warmup/num_epochs=1:int",
        "--stages/train/num_epochs=3:int",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir, result


def catalyst_run_in_process(logdir: Path, data: Path, *overrides: str, config=NUCLEI_CONFIG):
    """`catalyst-dl run` in this process (no start-up cost): returns the PodiumError it raises."""
    from catalyst.dl.scripts.run import main, parse_args

    from podium.errors import PodiumError

    argv = [
        "catalyst-dl",
        "--config",
        str(config),
        f"--args/logdir={logdir}:str",
        f"--data/root={data}:str",
        *overrides,
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        args, unknown = parse_args()
        with pytest.raises(PodiumError) as error:
            main(args, unknown)
    return str(error.value)


def run_two_ranks(worker, *args, start_method=None, timeout=120) -> None:
    """`worker(rank, *args)` in two processes (a gloo DDP test), waited for; a hang fails the test.

    Fork where the platform has it: a spawned worker re-imports podium (Catalyst, neptune,
    toolbelt: 10-25 s each on the 2-core box), a forked one starts at once.
    PODIUM_TEST_SPAWN=1 runs the same tests with spawn (what Catalyst's DDP engine uses).
    A worker's exception fails the test with the worker's traceback.
    """
    import torch.multiprocessing as mp

    if start_method is None:
        fork = "fork" in mp.get_all_start_methods() and os.environ.get("PODIUM_TEST_SPAWN") != "1"
        start_method = "fork" if fork else "spawn"
    context = mp.start_processes(worker, args=args, nprocs=2, join=False, start_method=start_method)
    deadline = time.time() + timeout
    while not context.join(timeout=1):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP workers hung")
