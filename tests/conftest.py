"""Shared test helpers: where the corpus lives and how fixtures are found."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# The shared corpus of real Dockerfiles lives beside the checkout; set
# DFIX_CORPUS to read it from elsewhere.
CORPUS = pathlib.Path(
    os.environ.get("DFIX_CORPUS") or ROOT.parent / "shared" / "corpus"
)


def find_tool(name: str) -> str | None:
    """Find a command on PATH or beside the running Python (a venv's bin)."""
    beside = pathlib.Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def corpus_files() -> list[pathlib.Path]:
    """Return every Dockerfile of the shared corpus, sorted."""
    if not CORPUS.is_dir():
        return []
    return sorted(
        path
        for path in CORPUS.rglob("*")
        if path.is_file() and path.name not in ("SOURCES.tsv", "README.md")
    )


@pytest.fixture(scope="session")
def corpus() -> list[pathlib.Path]:
    files = corpus_files()
    if not files:
        pytest.skip(
            f"the shared corpus is absent (looked in {CORPUS.name}/ beside "
            "the project's parent folder: ../shared/corpus)"
        )
    return files
