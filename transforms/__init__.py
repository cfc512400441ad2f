"""The transforms dfix runs, in the order it runs them.

Order is behaviour: each transform sees the text the ones before it wrote.
A contract test fails when a module here is missing from ``ALL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Protocol, cast

from fixer.edits import Finding, Safety, Settings
from fixer.parse import Dockerfile


class Transform(Protocol):
    """What every transform module provides."""

    NAME: str
    SAFETY: Safety
    __doc__: str | None

    def find_fixes(
        self, dockerfile: Dockerfile, settings: Settings
    ) -> Iterator[Finding]: ...


def _load() -> tuple[Transform, ...]:
    from transforms import (
        apk_virtual,
        apt_hygiene,
        multi_stage,
        non_root_user,
        pip_no_cache,
        slim_base,
    )

    modules: tuple[ModuleType, ...] = (
        # First: later transforms (non-root-user, slim-base) edit its new stage.
        multi_stage,
        # Before the hygiene transforms: its added RUN gets their checks too.
        slim_base,
        pip_no_cache,
        apk_virtual,
        apt_hygiene,
        # Last: every install the transforms above touch must still run as root.
        non_root_user,
    )
    return tuple(cast(Transform, module) for module in modules)


ALL: tuple[Transform, ...] = _load()


def by_name(name: str) -> Transform | None:
    for transform in ALL:
        if transform.NAME == name:
            return transform
    return None
