"""Every transform keeps the house contract: registry, name, docstring, fixtures."""

from __future__ import annotations

import pathlib
import pkgutil
import re
import textwrap

import pytest

import transforms
from fixer.engine import Selection, fix_text
from fixer.readme import BEGIN, END, README, transform_table
from tests.conftest import FIXTURES
from transforms import ALL, Transform

SECTIONS = ("What it does:", "Why:", "Example:", "Fix safety:", "Known gaps:")
SAFETY_WORDS = ("Safe", "Unsafe")


def _module_names() -> list[str]:
    return sorted(
        module.name
        for module in pkgutil.iter_modules(transforms.__path__)
        if not module.name.startswith("_")
    )


def test_every_module_is_registered_once() -> None:
    registered = [transform.__name__.rsplit(".", 1)[-1] for transform in ALL]  # type: ignore[attr-defined]
    assert sorted(registered) == _module_names()
    assert len(set(registered)) == len(registered)


@pytest.mark.parametrize("transform", ALL, ids=lambda transform: transform.NAME)
def test_name_matches_module(transform: Transform) -> None:
    module = transform.__name__.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
    assert transform.NAME == module.replace("_", "-")


@pytest.mark.parametrize("transform", ALL, ids=lambda transform: transform.NAME)
def test_docstring_has_its_sections_in_order(transform: Transform) -> None:
    doc = transform.__doc__ or ""
    summary = doc.strip().splitlines()[0]
    assert len(summary) <= 72, summary
    positions = [doc.find(f"\n{section}\n") for section in SECTIONS]
    assert all(position >= 0 for position in positions), positions
    assert positions == sorted(positions)
    safety = doc.split("\nFix safety:\n", 1)[1].strip()
    assert safety.startswith(SAFETY_WORDS)
    for line in doc.splitlines():
        assert len(line) <= 79, line


@pytest.mark.parametrize("transform", ALL, ids=lambda transform: transform.NAME)
def test_docstring_example_holds(transform: Transform) -> None:
    before, after = _example(transform.__doc__ or "")
    if not re.search(r"(?im)^from\s", before):
        before = "FROM debian:bookworm-slim\n" + before
        after = "FROM debian:bookworm-slim\n" + after
    selection = Selection(select=frozenset({transform.NAME}))
    assert fix_text(before, "Dockerfile", selection).fixed == after


@pytest.mark.parametrize("transform", ALL, ids=lambda transform: transform.NAME)
def test_fixtures_cover_change_and_no_change(transform: Transform) -> None:
    folder = FIXTURES / transform.NAME.replace("-", "_")
    inputs = [
        path
        for path in folder.glob("*.Dockerfile")
        if not path.name.endswith(".expected.Dockerfile")
    ]
    changing = [path for path in inputs if _expected(path).exists()]
    assert changing, f"{folder.name} has no fixture that changes"
    assert len(changing) < len(inputs), f"{folder.name} has no fixture that stays"


def test_readme_lists_the_transforms_from_their_docstrings() -> None:
    text = README.read_text(encoding="utf-8")
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated == "\n" + transform_table(), "run: python -m fixer.readme"


def _expected(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(
        path.name.removesuffix(".Dockerfile") + ".expected.Dockerfile"
    )


def _example(doc: str) -> tuple[str, str]:
    example = doc.split("\nExample:\n", 1)[1].split("\nFix safety:\n", 1)[0]
    before_part = example.split("Before:\n", 1)[1]
    before, after = before_part.split("After:\n", 1)
    return _block(before), _block(after)


def _block(text: str) -> str:
    lines = text.rstrip().splitlines()
    return textwrap.dedent("\n".join(lines)).strip("\n") + "\n"


def test_readme_shows_real_output() -> None:
    import subprocess
    import sys

    root = README.parent
    result = subprocess.run(
        [sys.executable, "-c", "from fixer.cli import main; main()", "--diff",
         "examples/python-api"],
        cwd=root, capture_output=True, text=True, check=False,
        env={"NO_COLOR": "1", "PATH": ""},
    )  # fmt: skip
    text = README.read_text(encoding="utf-8")
    assert result.stdout and result.stdout in text
    for line in result.stderr.splitlines():
        assert line in text, line
