"""multi-stage over the shared corpus: what it converts and why it skips.

The corpus is read, never written: each file is fixed in memory. Every
converted file must still parse, and a second run must change nothing.
The counts are printed (run with -s to see them).
"""

from __future__ import annotations

import collections
import pathlib

from fixer.edits import Settings
from fixer.engine import Selection, fix_text
from fixer.errors import ParseError
from fixer.parse import parse
from tests.conftest import CORPUS
from transforms import multi_stage

SELECTION = Selection(select=frozenset({multi_stage.NAME}))


def test_multi_stage_over_the_corpus(corpus: list[pathlib.Path]) -> None:
    candidates: collections.Counter[str] = collections.Counter()
    converted: list[str] = []
    reasons: collections.Counter[str] = collections.Counter()
    for path in corpus:
        text = path.read_bytes().decode("utf-8", "replace")
        try:
            dockerfile = parse(text, str(path))
        except ParseError:
            continue
        ecosystem = multi_stage.toolchain_of(dockerfile)
        result = fix_text(text, str(path), SELECTION, Settings())
        assert result.bugs == [], path
        if ecosystem is None:
            assert not result.changed, f"{path}: changed without a toolchain"
            continue
        candidates[ecosystem] += 1
        name = path.relative_to(CORPUS).as_posix()
        if result.changed:
            converted.append(name)
            parse(result.fixed, str(path))
            again = fix_text(result.fixed, str(path), SELECTION, Settings())
            assert again.fixes == [] and again.fixed == result.fixed, path
            continue
        skips = [skip.reason for skip in result.skips]
        reasons[skips[0] if skips else "no finding: runtime use of the image"] += 1

    total = sum(candidates.values())
    print(f"\nsingle-stage files on a toolchain image: {total} {dict(candidates)}")
    print(f"converted: {len(converted)}")
    for name in converted:
        print(f"  {name}")
    print("left alone:")
    for reason, count in reasons.most_common():
        print(f"  {count:4d}  {reason}")
    assert total == len(converted) + sum(reasons.values())
    assert converted, "the corpus holds convertible files"
