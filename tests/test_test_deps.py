"""scripts/test-deps.sh, which `make test` runs first: chromium is there, installed, or named."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "scripts" / "test-deps.sh"


def _fake(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _run(folder: Path) -> subprocess.CompletedProcess:
    """The script with only `folder` on PATH (bash itself by its full path)."""
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_chromium_present_is_silent(tmp_path):
    _fake(tmp_path, "chromium", "exit 0")
    result = _run(tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_root_installs_it_with_apt_get(tmp_path):
    log = tmp_path / "apt.log"
    _fake(tmp_path, "id", "echo 0")
    # the fake apt-get records its calls and "installs" chromium onto PATH
    _fake(
        tmp_path,
        "apt-get",
        f'echo "$@" >> {log}; case "$*" in *install*) printf "#!/bin/sh\\n" > '
        f"{tmp_path}/chromium; /bin/chmod +x {tmp_path}/chromium;; esac",
    )
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "installing Debian's chromium" in result.stdout
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]


def test_without_root_or_sudo_one_line_names_the_command(tmp_path):
    _fake(tmp_path, "id", "echo 1000")
    _fake(tmp_path, "apt-get", "exit 0")
    _fake(tmp_path, "sudo", "exit 1")  # asks for a password: not usable here
    result = _run(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == ""
    assert lines[0].startswith("make test: chromium is not installed")
    assert "sudo apt-get install -y chromium" in lines[0]


def test_pytest_without_chromium_stops_before_the_first_test(tmp_path):
    """A plain pytest of the report tests with no chromium on PATH: one line, no test run."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # the venv's bin: no chromium
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO / "tests" / "test_report.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert (
        "chromium is not installed and tests/test_report.py needs it"
        in result.stdout + result.stderr
    )
    assert " passed" not in result.stdout and " failed" not in result.stdout
