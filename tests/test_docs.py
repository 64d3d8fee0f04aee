"""The documentation: the site under docs/ builds with `mkdocs build --strict` (a broken link or
anchor, or a page left out of the nav, fails), and the README stays short with working links."""

import os
import re
import subprocess
import sys

import yaml
from markdown.extensions.toc import slugify

from conftest import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
README_MAX_LINES = 220


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # mkdocs-material's end-of-life notice
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    pages = sorted(p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md"))
    assert pages and all((site / page).is_file() for page in pages)


def _nav_files(entries):
    for entry in entries:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from ([value] if isinstance(value, str) else _nav_files(value))


def test_every_docs_page_is_in_the_nav():
    nav = list(_nav_files(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]))
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(set(nav)) == pages, "docs pages missing from / unknown in mkdocs.yml's nav"
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the rest belongs in docs/"


def _headings_slugs(path):
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {
        slugify(re.sub(r"[`*]", "", h), "-") for h in re.findall(r"^#+ (.+?)\s*$", text, flags=re.M)
    }


def test_readme_relative_links_resolve():
    text = re.sub(
        r"^\s*```.*?^\s*```", "", README.read_text(), flags=re.S | re.M
    )  # not in code blocks
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets, "no links found in README.md"
    broken = []
    for target in targets:
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (REPO / path) if path else README
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _headings_slugs(file):
            broken.append(target)
    assert not broken, f"README.md links that do not resolve: {broken}"
