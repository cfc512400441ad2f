"""Shared test helpers: where the corpus lives and how fixtures are found."""

from __future__ import annotations

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = ROOT.parent / "shared" / "corpus"


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
