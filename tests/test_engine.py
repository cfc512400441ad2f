"""The editing engine: parsing, raw offsets, shell commands, the fix loop."""

from __future__ import annotations

import types
from collections.abc import Iterator

import pytest

from fixer import engine
from fixer.diff import unified_diff
from fixer.edits import (
    Edit,
    Fix,
    Safety,
    Settings,
    apply_edits,
    continuation,
    insert,
    insert_lines_after,
    insert_lines_at_end,
)
from fixer.errors import ParseError
from fixer.parse import Dockerfile, join_instruction, parse
from fixer.shell import scripts_of
from tests.conftest import corpus_files


def test_instruction_ranges_come_from_buildkit() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM alpine AS base\n"
        "RUN echo a \\\n"
        "    # a comment inside the continuation\n"
        "\n"
        "    && echo b\n"
        "RUN <<EOF\n"
        "echo c\n"
        "EOF\n"
        "onbuild run echo d\n"
    )
    dockerfile = parse(text)
    spans = [(i.keyword, i.first_line, i.last_line) for i in dockerfile.instructions]
    assert spans == [("FROM", 1, 1), ("RUN", 2, 5), ("RUN", 6, 8), ("ONBUILD", 9, 9)]
    assert dockerfile.instructions[3].trigger == "RUN"
    assert dockerfile.stages[0].name == "base"


def test_logical_text_maps_back_to_raw_offsets() -> None:
    text = "FROM a\nRUN apt-get update \\\n  # note\n  && pip install x\n"
    dockerfile = parse(text)
    logical = dockerfile.shell_text(dockerfile.instructions[1])
    assert logical is not None
    assert logical.text == "apt-get update   && pip install x"
    position = logical.text.index("pip")
    assert text[logical.raw(position) : logical.raw(position + 3)] == "pip"


def test_shell_commands_are_found_and_quotes_are_not_commands() -> None:
    text = 'FROM a\nRUN sudo -u root env A=1 pip install x && echo "apt-get y" | sh\n'
    dockerfile = parse(text)
    [script] = scripts_of(dockerfile, dockerfile.instructions[1])
    programs = [command.program for command in script.commands]
    assert programs == ["pip", "echo", "sh"]
    pip = script.commands[0]
    assert [word.value for word in pip.wrappers] == ["sudo", "-u", "root", "env", "A=1"]
    assert text[pip.words[1].start : pip.words[1].end] == "install"


def test_windows_shell_is_not_read_as_sh() -> None:
    text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nRUN dir C:\\\n"
    dockerfile = parse(text)
    assert scripts_of(dockerfile, dockerfile.instructions[1]) == []
    text = 'FROM debian\nSHELL ["powershell", "-c"]\nRUN Get-Item x\n'
    dockerfile = parse(text)
    assert not dockerfile.is_posix_shell(dockerfile.instructions[2])


def test_joined_text_matches_buildkit_on_the_corpus() -> None:
    files = corpus_files()
    if not files:
        pytest.skip("the shared corpus is absent (../shared/corpus)")
    compared = 0
    for path in files:
        try:
            dockerfile = parse(path.read_bytes().decode("utf-8"))
        except (ParseError, UnicodeDecodeError):
            continue
        for instruction in dockerfile.instructions:
            if instruction.heredocs:
                continue
            joined = join_instruction(dockerfile, instruction).text
            assert joined.rstrip() == instruction.original.rstrip(), path
            compared += 1
    assert compared > 10000


def test_edits_keep_line_endings_and_missing_final_newline() -> None:
    dockerfile = parse("FROM a\r\nRUN x")
    edit = insert_lines_at_end(dockerfile, ["USER 1000"])
    assert apply_edits(dockerfile.text, [edit]) == "FROM a\r\nRUN x\r\nUSER 1000"
    edit = insert_lines_after(dockerfile, 0, ["ARG B"])
    assert apply_edits(dockerfile.text, [edit]) == "FROM a\r\nARG B\r\nRUN x"
    assert continuation(dockerfile, dockerfile.instructions[1]) == " \\\r\n    "


def test_overlapping_edits_are_refused() -> None:
    with pytest.raises(AssertionError):
        apply_edits("abcdef", [Edit(0, 3, "x"), Edit(2, 4, "y")])


def _fake_transform(name: str, find: object) -> types.ModuleType:
    module = types.ModuleType(f"transforms.{name.replace('-', '_')}")
    module.NAME = name  # type: ignore[attr-defined]
    module.SAFETY = Safety.SAFE  # type: ignore[attr-defined]
    module.find_fixes = find  # type: ignore[attr-defined]
    return module


def _fix(name: str, edit: Edit) -> Fix:
    return Fix(name, 0, "a problem", "an action", (edit,), Safety.SAFE)


def test_output_buildkit_rejects_is_dropped_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def breaks_json(dockerfile: Dockerfile, settings: Settings) -> Iterator[Fix]:
        instruction = dockerfile.instructions[-1]
        yield _fix("breaker", insert(instruction.start, "ENV BROKEN\n"))

    broken = _fake_transform("breaker", breaks_json)
    monkeypatch.setattr(engine, "ALL", (broken,))
    text = 'FROM a\nCMD ["run"]\n'
    result = engine.fix_text(text, "Dockerfile", engine.Selection())
    assert result.fixed == text
    assert result.fixes == []
    assert "breaker produced text BuildKit rejects" in result.bugs[0]


def test_transforms_undoing_each_other_stop_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def to_b(dockerfile: Dockerfile, settings: Settings) -> Iterator[Fix]:
        position = dockerfile.text.find("RUN a")
        if position >= 0:
            yield _fix("to-b", Edit(position + 4, position + 5, "b"))

    def to_a(dockerfile: Dockerfile, settings: Settings) -> Iterator[Fix]:
        position = dockerfile.text.find("RUN b")
        if position >= 0:
            yield _fix("to-a", Edit(position + 4, position + 5, "a"))

    monkeypatch.setattr(
        engine, "ALL", (_fake_transform("to-b", to_b), _fake_transform("to-a", to_a))
    )
    result = engine.fix_text("FROM x\nRUN a\n", "Dockerfile", engine.Selection())
    assert "did not settle" in result.bugs[0]


def test_fix_lines_refer_to_the_original_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def add_line(dockerfile: Dockerfile, settings: Settings) -> Iterator[Fix]:
        if "# added" not in dockerfile.text:
            yield Fix("adder", 0, "p", "a", (insert(0, "# added\n# added\n"),),
                      Safety.SAFE)  # fmt: skip

    def mark_run(dockerfile: Dockerfile, settings: Settings) -> Iterator[Fix]:
        for instruction in dockerfile.instructions:
            if instruction.keyword == "RUN" and "marked" not in instruction.original:
                edit = insert(instruction.end, " marked")
                yield Fix("marker", instruction.first_line, "p", "a", (edit,),
                          Safety.SAFE)  # fmt: skip

    monkeypatch.setattr(
        engine, "ALL",
        (_fake_transform("adder", add_line), _fake_transform("marker", mark_run)),
    )  # fmt: skip
    result = engine.fix_text("FROM x\nRUN a\n", "Dockerfile", engine.Selection())
    marker = [fix for fix in result.fixes if fix.transform == "marker"]
    assert [fix.line for fix in marker] == [2]


def test_diff_marks_a_missing_final_newline() -> None:
    diff = unified_diff("FROM a\nRUN x", "FROM a\nRUN y", "Dockerfile")
    assert diff.endswith("-RUN x\n\\ No newline at end of file\n"
                         "+RUN y\n\\ No newline at end of file\n")  # fmt: skip
    assert unified_diff("same", "same", "Dockerfile") == ""
