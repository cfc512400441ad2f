"""Run every fixture pair: exact bytes, a second run, and the output parses.

fixtures/<transform_module>/<case>.Dockerfile is an input;
<case>.expected.Dockerfile is what the transform must make of it. No
expected file means the input must stay byte for byte as it is. Only the
transform named by the folder runs, with all its fixes, safe and review.
"""

from __future__ import annotations

import pathlib

import pytest

from fixer.edits import Settings
from fixer.engine import Selection, fix_text
from fixer.files import decode_source, encode_source
from fixer.parse import parse
from tests.conftest import FIXTURES

EXPECTED_SUFFIX = ".expected.Dockerfile"


def _cases() -> list[pathlib.Path]:
    return sorted(
        path
        for path in FIXTURES.glob("*/*.Dockerfile")
        if not path.name.endswith(EXPECTED_SUFFIX)
    )


def _transform_name(case: pathlib.Path) -> str:
    return case.parent.name.replace("_", "-")


def _read(path: pathlib.Path) -> str:
    return decode_source(path.read_bytes(), str(path)).text


def _settings(case: pathlib.Path) -> Settings:
    """Per-case options come from <case>.toml beside the input, if present."""
    import tomllib

    options = case.with_name(case.name.removesuffix(".Dockerfile") + ".toml")
    if not options.exists():
        return Settings()
    with options.open("rb") as handle:
        return Settings(options=tomllib.load(handle))


@pytest.mark.parametrize(
    "case", _cases(), ids=lambda case: f"{case.parent.name}/{case.stem}"
)
def test_fixture(case: pathlib.Path) -> None:
    name = _transform_name(case)
    selection = Selection(select=frozenset({name}))
    settings = _settings(case)
    expected_path = case.with_name(
        case.name.removesuffix(".Dockerfile") + EXPECTED_SUFFIX
    )
    source = _read(case)
    expected = _read(expected_path) if expected_path.exists() else source

    result = fix_text(source, str(case), selection, settings)

    assert result.bugs == []
    assert result.fixed == expected
    for fix in result.fixes:
        assert len(fix.problem) <= 60 and not fix.problem.endswith("."), fix.problem
        assert len(fix.action) <= 40 and fix.action[:1].islower(), fix.action
    source_bytes = decode_source(case.read_bytes(), str(case))
    assert (
        encode_source(source_bytes, result.fixed)
        == (expected_path if expected_path.exists() else case).read_bytes()
    )
    assert bool(result.fixes) == expected_path.exists()
    again = fix_text(expected, str(expected_path), selection, settings)
    assert again.fixes == [], "a second run must find nothing"
    assert again.fixed == expected
    parse(expected, str(expected_path))
