"""The git side through the command line: --write --commit, dfix pr, dfix bot.

Branches are pushed over `git daemon` on 127.0.0.1, and FakeGitHub (see
test_pullrequest) stands in for GitHub's REST API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_gitops import BRANCH, daemon, git, git_config, work  # noqa: F401
from tests.test_pullrequest import TOKEN, FakeGitHub, github  # noqa: F401


def dfix(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", "from fixer.cli import main; main()", *arguments],
        cwd=cwd, capture_output=True, text=True, check=False, env=environment,
    )  # fmt: skip


def test_write_commit_puts_the_fix_on_a_branch(work: Path) -> None:
    (work / "app.py").write_text("print('my own edit')\n")
    result = dfix("--write", "--commit", "--select", "pip-no-cache", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"committed 1 file on {BRANCH}" in result.stderr
    assert git(work, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert (work / "app.py").read_text() == "print('my own edit')\n"
    shown = git(work, "show", f"{BRANCH}:Dockerfile")
    assert "--no-cache-dir" in shown
    assert git(work, "diff", "--name-only", "main", BRANCH) == "Dockerfile"
    again = dfix("--write", "--commit", "--select", "pip-no-cache", cwd=work)
    assert again.returncode == 0


def test_write_commit_refuses_a_dockerfile_with_user_edits(work: Path) -> None:
    dockerfile = work / "Dockerfile"
    edited = dockerfile.read_bytes() + b"# my edit\n"
    dockerfile.write_bytes(edited)
    result = dfix("--write", "--commit", cwd=work)
    assert result.returncode == 2
    assert "Dockerfile" in result.stderr
    assert dockerfile.read_bytes() == edited


def test_pr_pushes_and_opens_a_pull_request(
    work: Path,
    daemon: tuple[Path, str],
    github: FakeGitHub,  # noqa: F811
) -> None:
    before = (work / "Dockerfile").read_bytes()
    result = dfix(
        "pr", "--select", "pip-no-cache", "--api-url", github.api_url,
        cwd=work, env={"GITHUB_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "opened pull request #" in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert (work / "Dockerfile").read_bytes() == before
    bare = daemon[0] / "acme" / "app.git"
    assert git(bare, "rev-parse", BRANCH) == git(work, "rev-parse", BRANCH)
    again = dfix(
        "pr", "--select", "pip-no-cache", "--api-url", github.api_url,
        cwd=work, env={"GITHUB_TOKEN": TOKEN},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "updated pull request #" in again.stderr


def test_bot_dry_run_over_two_repositories(
    work: Path,
    daemon: tuple[Path, str],
    tmp_path: Path,  # noqa: F811
) -> None:
    url = f"{daemon[1]}/acme/app.git"
    result = dfix("bot", "--dry-run", url, f"{daemon[1]}/acme/missing.git",
                  cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "would-open" in result.stderr
    assert "failed" in result.stderr
