"""Committing fixes on a branch, against real git repositories.

The user's repository is a clone of a bare repository that a local
`git daemon` serves on 127.0.0.1, as a remote on a forge would be.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fixer.engine import FileChange, FixRecord
from fixer.errors import DfixError, GitError
from fixer.gitops import check_clean, commit_changes

BRANCH = "dfix/fixes"
DOCKERFILE = b'FROM python:3.12-slim\nRUN pip install flask\nCMD ["flask", "run"]\n'
PIP_FIX = FixRecord(
    transform="pip-no-cache",
    line=2,
    problem="pip keeps its download cache in the image",
    action="add --no-cache-dir",
    safety="safe",
    review_note="",
)
USER_FIX = FixRecord(
    transform="non-root-user",
    line=3,
    problem="The container runs as root",
    action="add USER app",
    safety="review",
    review_note="check the app can write where it needs to",
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("git daemon exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("git daemon did not start listening")


def isolate_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give git a known identity and no user or system configuration."""
    config = tmp_path / "gitconfig"
    config.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
        "[advice]\n\tdetachedHead = false\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@contextmanager
def serve_git(base: Path) -> Iterator[str]:
    """Serve the bare repositories under base over git:// on 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [
            "git", "daemon", "--export-all", "--enable=receive-pack",
            f"--base-path={base}", "--listen=127.0.0.1", f"--port={port}",
            "--reuseaddr", "--informative-errors",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        yield f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def make_work_repo(tmp_path: Path, base: Path, url: str) -> Path:
    """Create acme/app.git and a clone of it with three files committed."""
    bare = base / "acme" / "app.git"
    bare.parent.mkdir(parents=True)
    git(tmp_path, "init", "--bare", "--initial-branch=main", str(bare))
    clone = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", f"{url}/acme/app.git", str(clone))
    (clone / "Dockerfile").write_bytes(DOCKERFILE)
    (clone / "app.py").write_text("print('hello')\n")
    (clone / "README.md").write_text("# app\n")
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", "Initial commit")
    git(clone, "push", "--quiet", "origin", "main")
    return clone


@pytest.fixture(autouse=True)
def git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git(tmp_path, monkeypatch)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Bare repositories in tmp_path/served, and the git:// URL serving them."""
    base = tmp_path / "served"
    base.mkdir()
    with serve_git(base) as url:
        yield base, url


@pytest.fixture
def work(tmp_path: Path, daemon: tuple[Path, str]) -> Path:
    """A clone of acme/app.git with Dockerfile, app.py and README committed."""
    return make_work_repo(tmp_path, *daemon)


def pip_change(repo: Path, name: str = "Dockerfile") -> FileChange:
    path = repo / name
    original = path.read_bytes()
    fixed = original.replace(b"pip install", b"pip install --no-cache-dir")
    return FileChange(path=path, original=original, fixed=fixed, fixes=(PIP_FIX,))


def both_changes(repo: Path) -> FileChange:
    path = repo / "Dockerfile"
    original = path.read_bytes()
    fixed = original.replace(b"pip install", b"pip install --no-cache-dir")
    fixed = fixed.replace(b"CMD", b"USER app\nCMD")
    return FileChange(path, original, fixed, (PIP_FIX, USER_FIX))


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file of the working tree plus the index and HEAD, as bytes."""
    files = {
        str(path.relative_to(repo)): path.read_bytes()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(repo).parts
    }
    git_dir = Path(git(repo, "rev-parse", "--absolute-git-dir"))
    files["<index>"] = (git_dir / "index").read_bytes()
    files["<HEAD>"] = (git_dir / "HEAD").read_bytes()
    return files


def commits_on_branch(repo: Path, base: str = "HEAD") -> list[str]:
    return git(repo, "rev-list", f"{base}..{BRANCH}").split()


def make_user_mess(repo: Path) -> None:
    """Leave a modified file, an untracked file and a staged change."""
    (repo / "app.py").write_text("print('work in progress')\n")
    (repo / "notes.txt").write_text("todo\n")
    (repo / "README.md").write_text("# app\n\nStaged text.\n")
    git(repo, "add", "README.md")


def test_commit_leaves_user_checkout_untouched(work: Path) -> None:
    make_user_mess(work)
    change = both_changes(work)
    before = snapshot(work)

    check_clean([change.path])
    change.path.write_bytes(change.fixed)
    result = commit_changes([change])

    after = snapshot(work)
    assert after.pop("Dockerfile") == change.fixed
    before.pop("Dockerfile")
    assert after == before
    assert git(work, "branch", "--show-current") == "main"
    assert result.branch == BRANCH
    assert result.files == ("Dockerfile",)
    assert result.sha == git(work, "rev-parse", BRANCH)


def test_branch_holds_one_commit_with_the_changed_file(work: Path) -> None:
    make_user_mess(work)
    change = both_changes(work)

    result = commit_changes([change])

    assert commits_on_branch(work) == [result.sha]
    assert git(work, "rev-parse", f"{BRANCH}^") == git(work, "rev-parse", "HEAD")
    changed = git(work, "diff", "--name-only", "HEAD", BRANCH).splitlines()
    assert changed == ["Dockerfile"]
    shown = subprocess.run(
        ["git", "show", f"{BRANCH}:Dockerfile"], cwd=work, capture_output=True
    )
    assert shown.stdout == change.fixed


def test_commit_message_lists_each_fix(work: Path) -> None:
    change = both_changes(work)

    commit_changes([change], message_title="Fix Dockerfiles")

    message = git(work, "log", "-1", "--format=%B", BRANCH)
    assert message.splitlines() == [
        "Fix Dockerfiles",
        "",
        "- Dockerfile:2: pip-no-cache: pip keeps its download cache in the "
        "image; add --no-cache-dir [safe]",
        "- Dockerfile:3: non-root-user: The container runs as root; "
        "add USER app [review]",
        "  check: check the app can write where it needs to",
    ]


def test_second_run_makes_no_new_commit(work: Path) -> None:
    change = pip_change(work)
    change.path.write_bytes(change.fixed)
    first = commit_changes([change])

    second = commit_changes([change])

    assert first.sha is not None
    assert second.sha is None
    assert second.files == ()
    assert commits_on_branch(work) == [first.sha]


def test_new_fixes_update_the_branch(work: Path) -> None:
    first = commit_changes([pip_change(work)])

    second = commit_changes([both_changes(work)])

    assert second.sha is not None
    assert commits_on_branch(work) == [second.sha, first.sha]
    assert git(work, "show", f"{BRANCH}:Dockerfile").encode() + b"\n" == (
        both_changes(work).fixed
    )


def test_branch_restarts_from_head_when_head_moved_on(work: Path) -> None:
    commit_changes([pip_change(work)])
    (work / "app.py").write_text("print('v2')\n")
    git(work, "commit", "--quiet", "-am", "Second commit")

    result = commit_changes([pip_change(work)])

    assert commits_on_branch(work) == [result.sha]
    assert git(work, "rev-parse", f"{BRANCH}^") == git(work, "rev-parse", "HEAD")


def test_other_files_of_the_branch_are_kept(work: Path) -> None:
    (work / "Dockerfile.dev").write_bytes(DOCKERFILE)
    git(work, "add", "Dockerfile.dev")
    git(work, "commit", "--quiet", "-m", "Add a dev image")
    commit_changes([pip_change(work, "Dockerfile.dev")])

    result = commit_changes([pip_change(work)])

    assert result.files == ("Dockerfile",)
    changed = git(work, "diff", "--name-only", "HEAD", BRANCH).splitlines()
    assert changed == ["Dockerfile", "Dockerfile.dev"]


def test_file_mode_is_kept(work: Path) -> None:
    git(work, "update-index", "--chmod=+x", "Dockerfile")
    git(work, "commit", "--quiet", "-m", "Make it executable")

    commit_changes([pip_change(work)])

    entry = git(work, "ls-tree", BRANCH, "--", "Dockerfile")
    assert entry.startswith("100755 blob ")


def test_file_in_a_subdirectory(work: Path) -> None:
    service = work / "services" / "api"
    service.mkdir(parents=True)
    (service / "Dockerfile").write_bytes(DOCKERFILE)
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "Add a service")

    result = commit_changes([pip_change(service)])

    assert result.files == ("services/api/Dockerfile",)
    message = git(work, "log", "-1", "--format=%B", BRANCH)
    assert "- services/api/Dockerfile:2: pip-no-cache" in message


def test_unchanged_files_make_no_commit(work: Path) -> None:
    path = work / "Dockerfile"
    same = FileChange(path, DOCKERFILE, DOCKERFILE, ())

    result = commit_changes([same])

    assert result.sha is None
    assert git(work, "branch", "--list", BRANCH) == ""


def test_unstaged_user_edits_are_refused(work: Path) -> None:
    (work / "Dockerfile").write_bytes(DOCKERFILE + b"EXPOSE 5000\n")

    with pytest.raises(DfixError, match="Dockerfile has uncommitted changes"):
        check_clean([work / "Dockerfile"])
    with pytest.raises(DfixError, match="Dockerfile has uncommitted changes"):
        commit_changes([pip_change(work)])
    assert git(work, "branch", "--list", BRANCH) == ""


def test_staged_user_edits_are_refused(work: Path) -> None:
    (work / "Dockerfile").write_bytes(DOCKERFILE + b"EXPOSE 5000\n")
    git(work, "add", "Dockerfile")
    (work / "Dockerfile").write_bytes(DOCKERFILE)

    with pytest.raises(DfixError, match="Dockerfile has uncommitted changes"):
        check_clean([work / "Dockerfile"])
    with pytest.raises(DfixError, match="Dockerfile has uncommitted changes"):
        commit_changes([pip_change(work)])


def test_untracked_dockerfile_is_refused(work: Path) -> None:
    (work / "Dockerfile.new").write_bytes(DOCKERFILE)

    with pytest.raises(DfixError, match="Dockerfile.new is not committed"):
        check_clean([work / "Dockerfile.new"])
    with pytest.raises(DfixError, match="Dockerfile.new is not committed"):
        commit_changes([pip_change(work, "Dockerfile.new")])


def test_file_changed_after_dfix_read_it_is_refused(work: Path) -> None:
    change = pip_change(work)
    change.path.write_bytes(b"FROM scratch\n")

    with pytest.raises(DfixError, match="changed on disk"):
        commit_changes([change])


def test_checked_out_branch_is_refused(work: Path) -> None:
    git(work, "switch", "--quiet", "-c", BRANCH)

    with pytest.raises(DfixError, match="is checked out"):
        commit_changes([pip_change(work)])


def test_invalid_branch_name_is_refused(work: Path) -> None:
    with pytest.raises(DfixError, match="not a valid branch name"):
        commit_changes([pip_change(work)], branch="bad..name")


def test_repository_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    git(tmp_path, "init", "--quiet", str(repo))
    (repo / "Dockerfile").write_bytes(DOCKERFILE)
    change = pip_change(repo)

    check_clean([change.path])
    result = commit_changes([change])

    assert result.sha is not None
    assert git(repo, "rev-list", "--count", BRANCH) == "1"
    assert git(repo, "ls-tree", "--name-only", BRANCH) == "Dockerfile"
    assert (repo / "Dockerfile").read_bytes() == DOCKERFILE
    with pytest.raises(subprocess.CalledProcessError):
        git(repo, "rev-parse", "--verify", "HEAD")
    assert commit_changes([change]).sha is None


def test_detached_head(work: Path) -> None:
    git(work, "switch", "--quiet", "--detach", "HEAD")
    head = git(work, "rev-parse", "HEAD")

    result = commit_changes([pip_change(work)])

    assert git(work, "rev-parse", f"{BRANCH}^") == head
    assert result.files == ("Dockerfile",)
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "branch", "--show-current") == ""


def test_linked_worktree(work: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(work, "worktree", "add", "--quiet", "-b", "feature", str(linked))
    (linked / "app.py").write_text("print('feature')\n")
    git(linked, "commit", "--quiet", "-am", "Feature work")
    make_user_mess(linked)
    change = pip_change(linked)
    before = snapshot(linked)

    result = commit_changes([change])

    assert snapshot(linked) == before
    assert git(work, "rev-parse", f"{BRANCH}^") == git(linked, "rev-parse", "HEAD")
    assert result.sha == git(work, "rev-parse", BRANCH)
    assert git(linked, "branch", "--show-current") == "feature"


def test_outside_a_repository(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "Dockerfile").write_bytes(DOCKERFILE)

    with pytest.raises(GitError, match="not a git repository: .*lonely"):
        commit_changes([pip_change(lonely)])
    with pytest.raises(GitError, match="not a git repository"):
        check_clean([lonely / "Dockerfile"])


def test_index_lock_is_left_alone(work: Path) -> None:
    # No command dfix runs takes the user's index lock: a held lock, as while
    # an editor's git integration works, does not stop the commit.
    lock = work / ".git" / "index.lock"
    lock.write_bytes(b"")
    try:
        result = commit_changes([pip_change(work)])
    finally:
        os.remove(lock)

    assert result.sha is not None
