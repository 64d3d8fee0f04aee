"""Python 3.11 / 3.12 / 3.13: which interpreter `make setup` builds .venv with
(scripts/find_python.sh, with fake `python3.X` commands on PATH), and podium.compat's
`distutils.version` for Catalyst where `distutils` is gone (3.12+), checked here on any version
by hiding `distutils` from the interpreter's own finders."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from podium.compat import distutils_version, startup

REPO = Path(__file__).resolve().parents[1]
FIND_PYTHON = REPO / "scripts" / "find_python.sh"
SH = shutil.which("sh") or "/bin/sh"


# ---------------------------------------------------------------- interpreter choice


def fake_python(folder: Path, name: str, version: str | None) -> Path:
    """A `name` command that answers the version probe like Python `version` ("3.12.1"), or,
    for version None, fails like a pyenv shim of a version that is not selected."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if version is None:
        body = f'echo "pyenv: {name}: command not found" >&2\nexit 127\n'
    else:
        minor = ".".join(version.split(".")[:2])
        # `-c CODE` is the probe; `-m venv DIR` makes a venv whose pip and python log their calls
        body = (
            f'if [ "$1" = "-c" ]; then echo "{minor} {version} $0"; exit 0; fi\n'
            'if [ "$1 $2" = "-m venv" ]; then\n'
            '  /bin/mkdir -p "$3/bin"\n'
            "  for tool in python pip; do\n"
            '    printf \'#!/bin/sh\\necho "%s $*" >> '
            '"%s/calls.log"\\n\' "$tool" "$3" > "$3/bin/$tool"\n'
            '    /bin/chmod +x "$3/bin/$tool"\n'
            "  done\n"
            f'  echo "venv by {name} {version}" > "$3/made-by"\n'
            "fi\n"
        )
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def choose(tmp_path, versions: dict, python: str = ""):
    """Run find_python.sh with only `versions` ({name: version or None}) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, version in versions.items():
        fake_python(bin_dir, name, version)
    result = subprocess.run(
        [SH, str(FIND_PYTHON), python],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        timeout=30,
    )
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def test_python_given_wins(tmp_path):
    mine = fake_python(tmp_path / "elsewhere", "python", "3.13.0")
    code, out, err = choose(tmp_path, {"python3.11": "3.11.7"}, python=str(mine))
    assert (code, out) == (0, str(mine))
    assert err == f"make setup: using {mine} (Python 3.13.0): given as PYTHON"


def test_python311_preferred(tmp_path):
    present = {"python3.13": "3.13.0", "python3.12": "3.12.1", "python3.11": "3.11.7"}
    code, out, err = choose(tmp_path, present)
    assert (code, out) == (0, str(tmp_path / "bin" / "python3.11"))
    assert "Python 3.11.7" in err and "whole test suite" in err


@pytest.mark.parametrize(
    "present, chosen",
    [
        ({"python3.12": "3.12.1", "python3.13": "3.13.0"}, "python3.12"),
        ({"python3.13": "3.13.0"}, "python3.13"),
        ({"python3": "3.12.3"}, "python3"),  # no python3.X command, but python3 is a supported one
    ],
)
def test_newer_supported_version_when_no_311(tmp_path, present, chosen):
    code, out, err = choose(tmp_path, present)
    assert (code, out) == (0, str(tmp_path / "bin" / chosen))
    assert err.startswith(f"make setup: using {out} (Python {present[chosen]}): ")
    assert "no working python3.11" in err or "python3 is 3.12" in err


def test_broken_shim_is_skipped(tmp_path):
    # pyenv: `command -v python3.11` succeeds, running it fails
    code, out, err = choose(tmp_path, {"python3.11": None, "python3.13": "3.13.0"})
    assert (code, out) == (0, str(tmp_path / "bin" / "python3.13"))


def test_none_found_one_line(tmp_path):
    code, out, err = choose(
        tmp_path, {"python3.11": None, "python3": "3.10.12", "python3.14": "3.14.0"}
    )
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1
    assert "podium runs on Python 3.11, 3.12 or 3.13" in err
    assert (
        "found: python3.11 (on PATH but does not run), python3 = 3.10.12, python3.14 = 3.14.0"
        in err
    )
    assert "apt install python3.11-venv" in err and "uv python install 3.11" in err
    assert "make demo PYTHON=/path/to/python" in err


def test_nothing_on_path(tmp_path):
    code, out, err = choose(tmp_path, {})
    assert code != 0 and out == "" and len(err.splitlines()) == 1 and "found: none" in err


@pytest.mark.parametrize(
    "version, says", [("3.10.13", "is Python 3.10.13"), (None, "does not run")]
)
def test_unsupported_python_given_refused(tmp_path, version, says):
    old = fake_python(tmp_path / "elsewhere", "python3.10", version)
    code, out, err = choose(tmp_path, {"python3.11": "3.11.7"}, python=str(old))
    assert code != 0 and out == ""
    assert err.splitlines() == [err] and f"PYTHON={old} {says}" in err
    assert "podium runs on Python 3.11, 3.12 or 3.13" in err


def test_python_given_not_found(tmp_path):
    code, out, err = choose(tmp_path, {"python3.11": "3.11.7"}, python="python3.9")
    assert code != 0 and err.startswith("make setup: PYTHON=python3.9 not found;")


# ---- through the Makefile's setup target (a copy of it in tmp_path, fake pip / venv)


def _make_setup(tmp_path, versions: dict, *args):
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True, exist_ok=True)
    (project / "podium" / "compat").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Makefile", project / "Makefile")
    shutil.copy(FIND_PYTHON, project / "scripts" / "find_python.sh")
    for name in (
        "requirements.txt",
        "requirements-nodeps.txt",
        "pyproject.toml",
        "podium/compat/startup.py",
    ):
        (project / name).touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "touch"):  # the recipe's only programs besides the fakes
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, version in versions.items():
        fake_python(bin_dir, name, version)
    result = subprocess.run(
        [shutil.which("make"), "--no-print-directory", "setup", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        timeout=60,
    )
    return result, project


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_builds_with_the_chosen_python_then_reuses_it(tmp_path):
    result, project = _make_setup(tmp_path, {"python3.12": None, "python3.13": "3.13.0"})
    assert result.returncode == 0, result.stderr
    assert "python3.13 (Python 3.13.0): no working python3.11" in result.stderr
    assert (project / ".venv" / "made-by").read_text() == "venv by python3.13 3.13.0\n"
    assert (
        "pip install --quiet pip==24.0 setuptools>=64"
        in (project / ".venv" / "calls.log").read_text()
    )
    assert (project / ".venv" / ".podium-installed").exists()

    # stale stamp, no Python on PATH at all: the existing .venv is reused, nothing is chosen
    (project / ".venv" / ".podium-installed").unlink()
    for name in ("python3.12", "python3.13"):
        (tmp_path / "bin" / name).unlink()
    again, _ = _make_setup(tmp_path, {}, "PYTHON=python3.10")
    assert again.returncode == 0, again.stderr
    assert "make setup: reusing .venv" in again.stdout and "using" not in again.stderr
    assert (project / ".venv" / ".podium-installed").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_stops_with_the_one_line(tmp_path):
    result, project = _make_setup(tmp_path, {"python3.10": "3.10.13"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert lines == [
        line for line in lines if line.startswith("make setup: no supported Python found")
    ]
    assert len(lines) == 1 and "found: python3.10 = 3.10.13" in lines[0]
    assert not (project / ".venv").exists()

    refused, _ = _make_setup(tmp_path, {"python3.10": "3.10.13"}, "PYTHON=python3.10")
    assert (
        refused.returncode != 0
        and "make setup: PYTHON=python3.10 is Python 3.10.13;" in refused.stderr
    )


# ---------------------------------------------------------------- distutils.version (3.12+)

# What an interpreter without `distutils` looks like (3.12+): the finders present at start-up
# (the standard library's, setuptools' _distutils_hack) no longer find it. Finders added later
# (podium's) still run.
HIDE_DISTUTILS = """
import sys
class _Hide:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name == "distutils" or name.startswith("distutils."):
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, name):
        return getattr(self.finder, name)
sys.meta_path[:] = [_Hide(finder) for finder in sys.meta_path]
for name in [name for name in sys.modules if name == "distutils" or name.startswith("distutils.")]:
    del sys.modules[name]
try:
    import distutils
    raise SystemExit("distutils still importable: the test cannot show anything")
except ModuleNotFoundError:
    pass
"""


def test_catalyst_imports_without_distutils():
    """As `catalyst-dl run` starts: podium_startup.pth's line (podium first), then Catalyst's
    command line, whose `catalyst.callbacks` imports `distutils.version.LooseVersion`."""
    code = (
        HIDE_DISTUTILS
        + f"""
sys.argv = ["/venv/bin/catalyst-dl", "run", "--help"]
exec({startup.HOOK!r})
from catalyst.dl.__main__ import main
from catalyst import dl
from distutils.version import LooseVersion
import torch
assert LooseVersion(torch.__version__) >= LooseVersion("1.8.1")
assert hasattr(dl, "ProfilerCallback")  # catalyst.callbacks took the torch >= 1.8.1 branch
try:
    import distutils.sysconfig
    raise SystemExit("the stand-in serves more than distutils.version")
except ModuleNotFoundError:
    pass
print("ok", LooseVersion.__module__)
"""
    )
    env = {**os.environ, "PODIUM_STARTUP_HOOK": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "podium.compat.distutils_version"]


def test_loose_version_compares_like_catalyst_needs():
    V = distutils_version.LooseVersion
    assert V("2.14.1+cu130") >= V("1.8.1") and V("2.14.1+cpu") >= "1.8.1"
    assert V("1.8.0") < V("1.8.1") < V("1.10") and V("1.10.0") > "1.9"
    assert V("1.8.1") == "1.8.1" and V("1.8") == V("1.8.0") and V("1.13.0a0+git1234") < "1.13"
    assert V("2.1.0-custom") == "2.1.0"  # not PEP 440: compared by its leading release numbers
    assert str(V("2.0.1")) == "2.0.1" and repr(V("2.0.1")) == "LooseVersion ('2.0.1')"
    with pytest.raises(ValueError):
        V("custom")


def test_stand_in_only_where_distutils_is_missing():
    """podium never shadows a real `distutils` (3.11's, or setuptools' on any version)."""
    import distutils.version

    assert distutils_version.FINDER in sys.meta_path
    if sys.version_info < (3, 12) or "setuptools" in str(getattr(distutils, "__file__", "")):
        assert not getattr(distutils.version, "__podium_shim__", False)
    distutils_version.apply()
    assert sum(finder is distutils_version.FINDER for finder in sys.meta_path) == 1


# ---------------------------------------------------------------- tensorboardX at exit (3.12+)


class _Queue:
    """The writer's queue as an atexit callback sees it on 3.12+: `put` cannot start the feeder
    thread (`get` still reaches the real queue, which the worker thread waits on). Once the
    writer has closed the real queue, `get` hands the worker its stop signal: at a real exit the
    daemon thread just dies, here it must not outlive the test."""

    def __init__(self, worker, message):
        self.real, self.message, self.stop = worker._queue, message, worker._shutdown_signal

    def put(self, item):
        raise RuntimeError(self.message)

    def get(self, *args, **kwargs):
        try:
            return self.real.get(*args, **kwargs)
        except ValueError:  # "Queue … is closed"
            return self.stop


def test_tensorboardx_writer_closes_when_no_thread_may_start(tmp_path):
    from tensorboardX.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path), flush_secs=1)  # the worker wakes every second
    first = writer._worker
    first._queue = _Queue(first, "can't create new thread at interpreter shutdown")
    writer.close()  # unpatched: the RuntimeError
    assert writer._closed and len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    first.join(timeout=30)
    assert not first.is_alive()

    other = EventFileWriter(str(tmp_path / "other"))
    worker = other._worker
    worker._queue = _Queue(worker, "can't start new thread")  # any other failure: raised
    with pytest.raises(RuntimeError, match="can't start new thread"):
        other.close()
    worker._queue = worker._queue.real
    other.close()


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="before 3.12 an atexit callback may start a thread"
)
def test_unclosed_tensorboardx_writer_exits_quietly(tmp_path):
    code = (
        f"import podium; from tensorboardX import SummaryWriter; SummaryWriter({str(tmp_path)!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0 and "Exception ignored" not in result.stderr, result.stderr[
        -3000:
    ]
