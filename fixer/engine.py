"""Run the transforms over one Dockerfile's text until nothing changes.

Transforms run one at a time in the order of ``transforms.ALL``. After each
one the text is parsed again, so the next transform sees its output. The
chain repeats until a pass finds nothing, at most ``MAX_PASSES`` times.
Output that BuildKit's parser rejects is never kept: that transform's fixes
are dropped for the file and reported as a dfix bug.
"""

from __future__ import annotations

import bisect
import difflib
import logging
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from fixer.edits import Edit, Fix, Safety, Settings, Skip, apply_edits, overlaps
from fixer.errors import ParseError
from fixer.parse import Dockerfile, parse
from transforms import ALL, Transform

logger = logging.getLogger(__name__)

MAX_PASSES = 5


@dataclass(frozen=True)
class FixRecord:
    """One fix as reported: ``line`` is 1-based in the original file."""

    transform: str
    line: int
    problem: str
    action: str
    safety: str
    review_note: str


@dataclass(frozen=True)
class SkipRecord:
    transform: str
    line: int
    reason: str


@dataclass
class FileResult:
    """What dfix found and did for one file's text."""

    path: str
    original: str
    fixed: str
    fixes: list[FixRecord] = field(default_factory=list)
    skips: list[SkipRecord] = field(default_factory=list)
    bugs: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.fixed != self.original


@dataclass(frozen=True)
class FileChange:
    """A fixed file, as the git side needs it."""

    path: pathlib.Path
    original: bytes
    fixed: bytes
    fixes: tuple[FixRecord, ...]


@dataclass(frozen=True)
class Selection:
    """Which transforms run, and whether review fixes are kept."""

    select: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset()
    safe_only: bool = False

    def transforms(self) -> list[Transform]:
        chosen = []
        for transform in ALL:
            name = transform.NAME
            if self.select and name not in self.select:
                continue
            if not self.select and getattr(transform, "OPT_IN", False):
                continue
            if name in self.ignore:
                continue
            chosen.append(transform)
        return chosen


def fix_text(
    text: str,
    path: str = "Dockerfile",
    selection: Selection | None = None,
    settings: Settings | None = None,
) -> FileResult:
    """Return the fixed text of ``text`` and what was done to it.

    Raises ParseError when BuildKit's parser rejects the input itself.
    """
    selection = selection or Selection()
    settings = settings or Settings()
    dockerfile = parse(text, path)
    result = FileResult(path=path, original=text, fixed=text)
    if dockerfile.skip_file:
        return result
    origin = list(range(len(dockerfile.lines) + 1))
    transforms = selection.transforms()
    skips: dict[tuple[str, int, str], SkipRecord] = {}
    for number in range(MAX_PASSES):
        changed = False
        for transform in transforms:
            fixes = []
            for finding in transform.find_fixes(dockerfile, settings):
                if _is_suppressed(dockerfile, finding):
                    continue
                if isinstance(finding, Skip):
                    line = _original_line(origin, finding.line)
                    key = (finding.transform, line, finding.reason)
                    skips[key] = SkipRecord(finding.transform, line, finding.reason)
                elif not (selection.safe_only and finding.safety is Safety.UNSAFE):
                    fixes.append(finding)
            fixes = _without_overlaps(fixes)
            logger.debug("%s: %s found %d fixes", path, transform.NAME, len(fixes))
            if not fixes:
                continue
            new_text = apply_edits(
                dockerfile.text, [edit for fix in fixes for edit in fix.edits]
            )
            if new_text == dockerfile.text:
                continue
            try:
                new_dockerfile = parse(new_text, path)
            except ParseError as error:
                message = (
                    f"{transform.NAME} produced text BuildKit rejects ({error}); "
                    "its fixes were dropped"
                )
                logger.debug("%s: %s", path, message)
                result.bugs.append(message)
                transforms = [other for other in transforms if other is not transform]
                continue
            for fix in fixes:
                result.fixes.append(
                    FixRecord(
                        transform=fix.transform,
                        line=_original_line(origin, fix.line),
                        problem=fix.problem,
                        action=fix.action,
                        safety=fix.safety.value,
                        review_note=fix.note,
                    )
                )
            origin = _follow_lines(dockerfile, new_dockerfile, origin)
            dockerfile = new_dockerfile
            changed = True
        if not changed:
            break
        if number == MAX_PASSES - 1:
            result.bugs.append(
                f"fixes did not settle after {MAX_PASSES} passes; "
                "two transforms may be undoing each other"
            )
    result.fixed = dockerfile.text
    result.skips = sorted(skips.values(), key=lambda skip: (skip.line, skip.transform))
    result.fixes.sort(key=lambda fix: fix.line)
    return result


def _is_suppressed(dockerfile: Dockerfile, finding: Fix | Skip) -> bool:
    instruction = dockerfile.instruction_at(finding.line)
    if instruction is None:
        return False
    names = dockerfile.suppressed(instruction)
    return names is not None and (not names or finding.transform in names)


def _without_overlaps(fixes: Sequence[Fix]) -> list[Fix]:
    """Keep fixes whose edits do not overlap an earlier fix's.

    A dropped fix is found again on the next pass, against the new text.
    """
    kept: list[Fix] = []
    spans: list[tuple[int, int]] = []
    for fix in fixes:
        if any(_touches(spans, edit) for edit in fix.edits):
            continue
        kept.append(fix)
        for edit in fix.edits:
            bisect.insort(spans, (edit.start, edit.end))
    return kept


def _touches(spans: list[tuple[int, int]], edit: Edit) -> bool:
    """Tell whether ``edit`` overlaps one of the sorted ``spans``.

    Two insertions at the same offset overlap, since their order would be
    a guess; so does an insertion strictly inside a replaced span.
    """
    index = bisect.bisect_left(spans, (edit.start, edit.start))
    for start, end in spans[max(0, index - 1) : index + 1]:
        if overlaps([edit], [Edit(start, end, "")]):
            return True
    # Earlier spans that start before this edit may still reach into it.
    for start, end in reversed(spans[: max(0, index - 1)]):
        if end <= edit.start:
            break
        if overlaps([edit], [Edit(start, end, "")]):
            return True
    return False


def _original_line(origin: list[int], line: int) -> int:
    """Return the 1-based original line for a 0-based current line.

    A fix that appends at the end of the file is reported on the last line,
    never past it.
    """
    last = max(0, origin[-1] - 1)
    return min(origin[min(line, len(origin) - 1)], last) + 1


def _follow_lines(
    before: Dockerfile, after: Dockerfile, origin: list[int]
) -> list[int]:
    """Carry the map from current to original lines across one change."""
    matcher = difflib.SequenceMatcher(None, before.lines, after.lines, autojunk=False)
    new_origin = [0] * (len(after.lines) + 1)
    for tag, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        for offset in range(new_end - new_start):
            if tag == "equal":
                old = old_start + offset
            else:
                old = min(old_start + offset, max(old_end - 1, old_start))
            new_origin[new_start + offset] = origin[min(old, len(origin) - 1)]
    new_origin[len(after.lines)] = origin[-1]
    return new_origin
