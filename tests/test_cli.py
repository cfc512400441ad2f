"""The command line as a user meets it: streams, exit codes, files on disk."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

PIP_FILE = "FROM python:3.12-slim\nRUN pip install flask\n"
PIP_FIXED = "FROM python:3.12-slim\nRUN pip install --no-cache-dir flask\n"
CLEAN_FILE = "FROM python:3.12-slim\nRUN pip install --no-cache-dir flask\n"


def dfix(
    *arguments: str, cwd: pathlib.Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from fixer.cli import main; main()", *arguments],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        check=False,
        env=environment,
    )


def write(path: pathlib.Path, text: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def select_pip() -> tuple[str, str]:
    return ("--select", "pip-no-cache")


def test_diff_is_the_default_and_exits_one(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix(*select_pip(), cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout.decode()
    assert out.startswith("--- a/Dockerfile\n+++ b/Dockerfile\n")
    assert "+RUN pip install --no-cache-dir flask\n" in out
    err = result.stderr.decode()
    assert (
        "Dockerfile:2: pip-no-cache: pip keeps its download cache in the image; "
        "add --no-cache-dir [would apply]" in err
    )
    assert (tmp_path / "Dockerfile").read_text() == PIP_FILE


def test_diff_output_applies_with_git_apply(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "svc" / "Dockerfile", PIP_FILE)
    write(tmp_path / "Containerfile", "FROM python:3.12\r\nRUN pip install x")
    result = dfix(*select_pip(), cwd=tmp_path)
    patch = write(tmp_path / "change.patch", result.stdout)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, check=True)
    assert (tmp_path / "svc" / "Dockerfile").read_text() == PIP_FIXED
    assert (tmp_path / "Containerfile").read_bytes() == (
        b"FROM python:3.12\r\nRUN pip install --no-cache-dir x"
    )


def test_write_rewrites_in_place_and_keeps_mode(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "Dockerfile", PIP_FILE)
    path.chmod(0o640)
    result = dfix("--write", *select_pip(), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == b""
    assert path.read_text() == PIP_FIXED
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["Dockerfile"]


def test_check_fails_when_fixes_are_pending(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix("--check", *select_pip(), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == b""
    assert (tmp_path / "Dockerfile").read_text() == PIP_FILE


def test_check_passes_when_nothing_to_fix(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", CLEAN_FILE)
    result = dfix("--check", *select_pip(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_stdin_prints_fixed_text(tmp_path: pathlib.Path) -> None:
    result = dfix("-", *select_pip(), cwd=tmp_path, stdin=PIP_FILE.encode())
    assert result.returncode == 0
    assert result.stdout.decode() == PIP_FIXED


DOCKERFILE_NAMES = (
    "Dockerfile",
    "Containerfile",
    "Dockerfile.prod",
    "dockerfile-dev",
    "Dockerfile_arm",
    "api.Dockerfile",
    "web.dockerfile",
)


def test_directory_search_finds_dockerfile_names(tmp_path: pathlib.Path) -> None:
    for name in DOCKERFILE_NAMES:
        write(tmp_path / "found" / name, PIP_FILE)
    write(tmp_path / "found" / "Dockerfile.dockerignore", "node_modules\n")
    write(tmp_path / "found" / "README.md", "# not a Dockerfile\n")
    write(tmp_path / "node_modules" / "x" / "Dockerfile", PIP_FILE)
    write(tmp_path / ".git" / "Dockerfile", PIP_FILE)
    write(tmp_path / "ignored" / "Dockerfile", PIP_FILE)
    write(tmp_path / ".gitignore", "ignored/\n")
    result = dfix("--check", "--format", "json", *select_pip(), cwd=tmp_path)
    report = json.loads(result.stdout)
    paths = sorted(record["path"] for record in report["files"])
    assert paths == sorted(f"found/{name}" for name in DOCKERFILE_NAMES)


def test_a_named_file_is_processed_whatever_its_name(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "build.txt", PIP_FILE)
    result = dfix("--check", *select_pip(), "build.txt", cwd=tmp_path)
    assert result.returncode == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x00\x01\x02FROM", "binary file"),
        (b"FROM python\nRUN echo \xff\xfe\n", "not UTF-8"),
        (b"FROM python\nENV PATH\n", "ENV must have two arguments"),
    ],
    ids=["empty", "binary", "not-utf8", "unparsable"],
)
def test_bad_input_gets_one_line_and_others_still_run(
    tmp_path: pathlib.Path, content: bytes, message: str
) -> None:
    bad = write(tmp_path / "bad" / "Dockerfile", content)
    good = write(tmp_path / "good" / "Dockerfile", PIP_FILE)
    result = dfix("--write", *select_pip(), "bad/Dockerfile", "good", cwd=tmp_path)
    assert result.returncode == 2
    errors = [
        line
        for line in result.stderr.decode().splitlines()
        if line.startswith("dfix: error:")
    ]
    assert len(errors) == 1
    assert "bad/Dockerfile" in errors[0] and message in errors[0]
    assert bad.read_bytes() == content
    assert good.read_text() == PIP_FIXED


def test_missing_path_and_empty_folder_are_errors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix("--check", *select_pip(), "nope", "empty", "Dockerfile", cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "dfix: error: nope: no such file or directory" in err
    assert "dfix: error: empty: no Dockerfiles found in this folder" in err
    assert "Dockerfile:2: pip-no-cache" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_is_an_error(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "Dockerfile", PIP_FILE)
    path.chmod(0)
    result = dfix("--check", cwd=tmp_path)
    assert result.returncode == 2
    assert b"permission denied" in result.stderr


def test_symlink_out_of_the_tree_is_not_written(tmp_path: pathlib.Path) -> None:
    outside = write(tmp_path / "outside" / "Dockerfile", PIP_FILE)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Dockerfile").symlink_to(outside)
    inside = write(tree / "real" / "Dockerfile.base", PIP_FILE)
    (tree / "Dockerfile.link").symlink_to(inside)
    result = dfix("--write", *select_pip(), "tree", cwd=tmp_path)
    assert result.returncode == 2
    assert b"outside" in result.stderr
    assert outside.read_text() == PIP_FILE
    assert inside.read_text() == PIP_FIXED
    assert (tree / "Dockerfile.link").is_symlink()


def test_json_report_is_stable(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix("--format", "json", *select_pip(), cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["version"] == 1
    assert report["summary"]["fixes"] == 1
    [record] = report["files"]
    assert record["path"] == "Dockerfile"
    assert record["status"] == "would-fix"
    assert record["fixes"] == [
        {
            "transform": "pip-no-cache",
            "line": 2,
            "problem": "pip keeps its download cache in the image",
            "action": "add --no-cache-dir",
            "safety": "safe",
            "note": "",
            "status": "would apply",
        }
    ]
    assert record["diff"].startswith("--- a/Dockerfile")


def test_inline_suppression(tmp_path: pathlib.Path) -> None:
    text = (
        "FROM python:3.12-slim\n# dfix: ignore=pip-no-cache\nRUN pip install a\n"
        "# dfix: ignore\nRUN pip install b\nRUN pip install c\n"
    )
    write(tmp_path / "Dockerfile", text)
    result = dfix("--write", *select_pip(), cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "Dockerfile").read_text() == text.replace(
        "install c", "install --no-cache-dir c"
    )
    write(tmp_path / "Dockerfile", "# dfix: skip-file\n" + PIP_FILE)
    assert dfix("--check", *select_pip(), cwd=tmp_path).returncode == 0


def test_configuration_from_pyproject_and_dfix_toml(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.dfix]\nignore = ["pip-no-cache"]\n')
    write(tmp_path / "a" / "Dockerfile", PIP_FILE)
    write(tmp_path / "b" / ".dfix.toml", 'select = ["pip-no-cache"]\n')
    write(tmp_path / "b" / "Dockerfile", PIP_FILE)
    result = dfix("--format", "json", cwd=tmp_path)
    report = json.loads(result.stdout)
    transforms = {
        record["path"]: {fix["transform"] for fix in record["fixes"]}
        for record in report["files"]
    }
    assert "pip-no-cache" not in transforms["a/Dockerfile"]
    assert transforms["b/Dockerfile"] == {"pip-no-cache"}


def test_configuration_errors_name_the_file(tmp_path: pathlib.Path) -> None:
    write(tmp_path / ".dfix.toml", 'select = ["no-such-rule"]\n')
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix("--check", cwd=tmp_path)
    assert result.returncode == 2
    assert b".dfix.toml" in result.stderr and b"no-such-rule" in result.stderr


def test_unknown_transform_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix("--select", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert b"unknown transform nope" in result.stderr


def test_rules_and_explain(tmp_path: pathlib.Path) -> None:
    rules = dfix("rules", cwd=tmp_path)
    assert rules.returncode == 0
    assert b"pip-no-cache  " in rules.stdout
    explain = dfix("explain", "pip-no-cache", cwd=tmp_path)
    assert b"What it does:" in explain.stdout and b"Fix safety:" in explain.stdout
    assert dfix("explain", "nope", cwd=tmp_path).returncode == 2


def test_safe_only_drops_review_fixes(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix("--safe", "--format", "json", cwd=tmp_path)
    report = json.loads(result.stdout)
    safeties = {fix["safety"] for record in report["files"] for fix in record["fixes"]}
    assert safeties <= {"safe"}


def test_no_color_on_a_pipe(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", PIP_FILE)
    result = dfix(*select_pip(), cwd=tmp_path)
    assert b"\x1b[" not in result.stderr


def test_write_refuses_a_file_changed_meanwhile(tmp_path: pathlib.Path) -> None:
    from fixer.errors import WriteError
    from fixer.files import Target, read_source, write_atomically

    path = write(tmp_path / "Dockerfile", PIP_FILE)
    source = read_source(path)
    path.write_text(PIP_FILE + "# edited meanwhile\n")
    with pytest.raises(WriteError, match="changed on disk"):
        write_atomically(Target(path, tmp_path), source, PIP_FIXED)
    assert path.read_text().endswith("# edited meanwhile\n")


def test_examples_show_fixes() -> None:
    examples = pathlib.Path(__file__).resolve().parent.parent / "examples"
    result = dfix("--check", str(examples), cwd=examples)
    assert result.returncode == 1, result.stderr
    assert shutil.which("git") is not None


def test_stdin_check_and_diff_exit_one_when_fixes_are_pending(
    tmp_path: pathlib.Path,
) -> None:
    check = dfix("--check", *select_pip(), "-", cwd=tmp_path, stdin=PIP_FILE.encode())
    assert check.returncode == 1 and check.stdout == b""
    diff = dfix("--diff", *select_pip(), "-", cwd=tmp_path, stdin=PIP_FILE.encode())
    assert diff.returncode == 1
    assert b"+RUN pip install --no-cache-dir flask" in diff.stdout
    clean = dfix("--check", *select_pip(), "-", cwd=tmp_path, stdin=CLEAN_FILE.encode())
    assert clean.returncode == 0


def test_diff_of_a_file_with_a_byte_order_mark_applies(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "Dockerfile", b"\xef\xbb\xbf" + PIP_FILE.encode())
    patch = write(tmp_path / "p.patch", dfix(*select_pip(), cwd=tmp_path).stdout)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, check=True)
    assert path.read_bytes() == b"\xef\xbb\xbf" + PIP_FIXED.encode()


def test_symlink_out_of_the_tree_is_left_alone_in_every_mode(
    tmp_path: pathlib.Path,
) -> None:
    outside = write(tmp_path / "outside" / "Dockerfile", PIP_FILE)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "Dockerfile").symlink_to(outside)
    for mode in ("--diff", "--check", "--write"):
        result = dfix(mode, *select_pip(), "tree", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stdout == b""
        assert b"outside tree" in result.stderr
    assert outside.read_text() == PIP_FILE


def test_quiet_hides_the_places_left_unchanged(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", "FROM nginx:1.27\nCOPY site /usr/share/nginx/html\n")
    loud = dfix("--check", cwd=tmp_path)
    assert b"[skipped:" in loud.stderr
    quiet = dfix("--check", "--quiet", cwd=tmp_path)
    assert b"[skipped:" not in quiet.stderr
    assert b"1 file checked" in quiet.stderr


def test_json_error_records_have_every_key(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "Dockerfile", b"\x00binary")
    result = dfix("--format", "json", cwd=tmp_path)
    [record] = json.loads(result.stdout)["files"]
    assert set(record) == {"path", "status", "error", "fixes", "skips", "bugs", "diff"}


def test_paths_and_line_numbers_are_printed_as_they_are(tmp_path: pathlib.Path) -> None:
    text = "FROM python:3.12-slim\n" + "# filler\n" * 98 + "RUN pip install flask\n"
    write(tmp_path / "x[/]y" / "a:100:b.Dockerfile", text)
    result = dfix("--check", *select_pip(), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "x[/]y/a:100:b.Dockerfile:100: pip-no-cache:" in result.stderr.decode()
