"""non-root-user over the whole corpus: non-root or a reason, and right commands.

Every corpus file whose final stage is Linux and runs as root must come out
running as a non-root user or carry a skip reason; each line the transform
adds must use commands that exist in the stage's family; the output must
parse, and a second run must find nothing.
"""

from __future__ import annotations

import collections
import difflib
import pathlib
import re
from collections.abc import Iterator

from fixer.engine import Selection, fix_text
from fixer.errors import ParseError
from fixer.parse import Dockerfile, Stage, parse
from fixer.stages import final_stage, runs_as_root, stage_family

SELECTION = Selection(select=frozenset({"non-root-user"}))
SHADOW_RE = re.compile(r"\b(useradd|groupadd)\b")
BUSYBOX_RE = re.compile(r"\badduser\s+-[A-Za-z]|\baddgroup\s+-[A-Za-z]")
FORBIDDEN = {
    "alpine": SHADOW_RE,
    "busybox": SHADOW_RE,
    "debian": BUSYBOX_RE,
    "rhel": BUSYBOX_RE,
    "rhel-minimal": BUSYBOX_RE,
}
NO_SHELL = ("distroless", "scratch", "rhel-micro")


def _read(path: pathlib.Path) -> str:
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _final_stages(
    corpus: list[pathlib.Path],
) -> Iterator[tuple[pathlib.Path, str, Dockerfile, Stage]]:
    """Yield each corpus file that parses, with its text and final stage."""
    for path in corpus:
        text = _read(path)
        try:
            dockerfile = parse(text, str(path))
        except ParseError:
            continue
        stage = final_stage(dockerfile)
        if stage is not None:
            yield path, text, dockerfile, stage


def _added_lines(before: str, after: str) -> list[str]:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return [line[2:] for line in diff if line.startswith("+ ")]


def test_every_root_final_stage_ends_non_root_or_skipped(
    corpus: list[pathlib.Path],
) -> None:
    failures = []
    linux = root_before = root_after = 0
    reasons: collections.Counter[str] = collections.Counter()
    for path, text, dockerfile, stage in _final_stages(corpus):
        if stage_family(dockerfile, stage) == "windows":
            continue
        linux += 1
        root_before += runs_as_root(dockerfile, stage)
        result = fix_text(text, str(path), SELECTION)
        fixed = parse(result.fixed, str(path))
        fixed_stage = final_stage(fixed)
        assert fixed_stage is not None
        skipped = any(skip.transform == "non-root-user" for skip in result.skips)
        if runs_as_root(fixed, fixed_stage):
            root_after += 1
            reasons.update(
                skip.reason
                for skip in result.skips
                if skip.transform == "non-root-user"
            )
        if runs_as_root(fixed, fixed_stage) and not skipped:
            failures.append(f"{path.name}: still root without a skip reason")
        if result.bugs:
            failures.append(f"{path.name}: {result.bugs}")
        again = fix_text(result.fixed, str(path), SELECTION)
        if again.fixes:
            failures.append(f"{path.name}: a second run changed it again")
    print(
        f"\nfinal Linux stages running as root: {root_before} of {linux} "
        f"({root_before / linux:.1%}) before, {root_after} ({root_after / linux:.1%})"
        " after; why the rest stay root:"
    )
    for reason, count in reasons.most_common():
        print(f"  {count:5d}  {reason}")
    assert failures == []


def test_added_commands_exist_in_the_family(corpus: list[pathlib.Path]) -> None:
    failures = []
    for path, text, dockerfile, stage in _final_stages(corpus):
        family = stage_family(dockerfile, stage)
        result = fix_text(text, str(path), SELECTION)
        if not result.changed:
            continue
        added = _added_lines(text, result.fixed)
        forbidden = FORBIDDEN.get(family)
        for line in added:
            if forbidden is not None and forbidden.search(line):
                failures.append(f"{path.name} ({family}): {line.strip()}")
            if family in NO_SHELL and re.match(r"\s*(RUN|run)\b", line):
                failures.append(f"{path.name} ({family}) has no shell: {line.strip()}")
            if family != "rhel-minimal" and "microdnf" in line:
                failures.append(f"{path.name} ({family}): {line.strip()}")
    assert failures == []
