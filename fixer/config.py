"""Configuration from ``.dfix.toml`` or ``[tool.dfix]`` in ``pyproject.toml``.

The nearest file found from a Dockerfile's folder upwards wins; files are
not merged. Keys: ``select``, ``ignore`` (lists of transform names),
``exclude`` (gitignore-style patterns relative to the file's folder),
``safe`` (only safe fixes), and one table per transform for its options,
for example ``[tool.dfix.non-root-user]`` with ``uid = 10001``.
"""

from __future__ import annotations

import logging
import pathlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pathspec

from fixer.errors import DfixError

logger = logging.getLogger(__name__)

CONFIG_NAMES = (".dfix.toml", "pyproject.toml")
TOP_LEVEL_KEYS = frozenset({"select", "ignore", "exclude", "safe", "pr"})


@dataclass(frozen=True)
class Config:
    """One configuration file's settings; an empty one when there is none."""

    source: pathlib.Path | None = None
    select: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset()
    exclude: tuple[str, ...] = ()
    safe_only: bool = False
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pr: Mapping[str, Any] = field(default_factory=dict)

    def excludes(self, path: pathlib.Path) -> bool:
        """Tell whether ``path`` matches one of the ``exclude`` patterns."""
        if not self.exclude or self.source is None:
            return False
        base = self.source.parent
        try:
            relative = path.resolve().relative_to(base.resolve())
        except ValueError:
            return False
        spec = pathspec.GitIgnoreSpec.from_lines(self.exclude)
        return spec.match_file(relative.as_posix())


def config_for(path: pathlib.Path, known_names: frozenset[str]) -> Config:
    """Return the configuration that applies to the file at ``path``."""
    folder = path.parent if not path.is_dir() else path
    return _config_in(folder.resolve(), known_names)


@lru_cache(maxsize=256)
def _config_in(folder: pathlib.Path, known_names: frozenset[str]) -> Config:
    for name in CONFIG_NAMES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        table = _read_table(candidate)
        if table is not None:
            return _make_config(candidate, table, known_names)
    if folder.parent == folder:
        return Config()
    return _config_in(folder.parent, known_names)


def _read_table(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise DfixError(f"cannot read {path}: {error}") from error
    except OSError as error:
        raise DfixError(f"cannot read {path}: {error.strerror}") from error
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("dfix")
        return table if isinstance(table, dict) else None
    return data


def _make_config(
    path: pathlib.Path, table: dict[str, Any], known_names: frozenset[str]
) -> Config:
    options: dict[str, Mapping[str, Any]] = {}
    for key, value in table.items():
        if key in TOP_LEVEL_KEYS:
            continue
        if key not in known_names or not isinstance(value, dict):
            raise DfixError(f"{path}: unknown setting or transform '{key}'")
        options[key] = value
    select = _names(path, table, "select", known_names)
    ignore = _names(path, table, "ignore", known_names)
    exclude = table.get("exclude", [])
    if not isinstance(exclude, list):
        raise DfixError(f"{path}: 'exclude' must be a list of patterns")
    pr = table.get("pr", {})
    logger.debug("configuration from %s", path)
    return Config(
        source=path,
        select=select,
        ignore=ignore,
        exclude=tuple(str(pattern) for pattern in exclude),
        safe_only=bool(table.get("safe", False)),
        options=options,
        pr=pr if isinstance(pr, dict) else {},
    )


def _names(
    path: pathlib.Path, table: dict[str, Any], key: str, known_names: frozenset[str]
) -> frozenset[str]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise DfixError(f"{path}: '{key}' must be a list of transform names")
    unknown = [name for name in value if name not in known_names]
    if unknown:
        raise DfixError(f"{path}: unknown transform in '{key}': {', '.join(unknown)}")
    return frozenset(value)
