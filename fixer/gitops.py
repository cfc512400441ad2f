"""Commit dfix's fixes on a branch without touching the user's checkout.

The commit is built in a temporary index file: the parent's tree is read into
it, the fixed blobs are written to the object store, and the new tree, the
commit and the branch ref are created from there. The user's working tree,
index and current branch are never changed, so their own uncommitted work
stays exactly as it was.

A file is only committed when dfix's input equals what HEAD holds for it:
fixes made on top of the user's uncommitted edits would carry those edits
into the commit. For `dfix --write --commit` the CLI calls check_clean before
writing, then commit_changes, which accepts the file on disk being either the
original or the fixed bytes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import git

from fixer.errors import DfixError, GitError

if TYPE_CHECKING:
    from fixer.engine import FileChange

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "dfix/fixes"
DEFAULT_TITLE = "Apply dfix fixes"

# Pathspecs are file names, never globs ("Dockerfile[prod]"), and read-only
# commands such as status must not refresh the user's index as a side effect.
BASE_ENV = {"GIT_LITERAL_PATHSPECS": "1", "GIT_OPTIONAL_LOCKS": "0"}

# Modes dfix refuses to rewrite: a link or submodule is not a Dockerfile.
SPECIAL_MODES = {"120000": "a symbolic link", "160000": "a submodule"}
REGULAR_MODE = "100644"
EXECUTABLE_MODE = "100755"


@dataclass(frozen=True)
class CommitResult:
    """What commit_changes did.

    ``sha`` is None when the branch already held these fixes (or there was
    nothing to commit); ``files`` are the repository-relative paths that the
    new commit changed.
    """

    branch: str
    sha: str | None
    files: tuple[str, ...]
    repo_root: Path | None


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    sha: str


@dataclass(frozen=True)
class StagedFile:
    """One fixed file, ready for the temporary index."""

    relative: str
    change: FileChange
    mode: str


def find_repo(path: Path) -> git.Repo:
    """Return the repository whose working tree holds ``path``.

    Raises GitError when ``path`` is in no repository or in a bare one.
    """
    start = path if path.is_dir() else path.parent
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise GitError(f"not a git repository: {path}") from error

    if repo.working_tree_dir is None:
        repo.close()
        raise GitError(f"not a git repository with a working tree: {path}")

    return repo


def repo_root(repo: git.Repo) -> Path:
    """Return the top of the repository's working tree."""
    assert repo.working_tree_dir is not None
    return Path(repo.working_tree_dir)


def relative_path(repo: git.Repo, path: Path) -> str:
    """Return ``path`` relative to the working tree, with forward slashes.

    The file itself is not resolved, so a Dockerfile that is a symbolic link
    keeps its own name.
    """
    root = repo_root(repo).resolve()
    located = path.absolute().parent.resolve() / path.name
    try:
        return located.relative_to(root).as_posix()
    except ValueError as error:
        raise DfixError(f"{path} is outside the repository at {root}") from error


def check_clean(paths: Sequence[Path]) -> None:
    """Refuse files that differ from HEAD, before dfix writes them.

    Raises DfixError naming the first file that has uncommitted changes
    (staged or not), is not committed, or is not a regular file in git.
    """
    for path in paths:
        with find_repo(path) as repo:
            head = head_sha(repo)
            if head is None:
                # NOTE: with no commit yet every file is new, so there is no
                # committed version for dfix's edit to be mixed into.
                continue

            relative = relative_path(repo, path)
            _committed_entry(repo, head, relative, path)
            _refuse_uncommitted_edits(repo, relative, path)


def commit_changes(
    changes: Sequence[FileChange],
    branch: str = DEFAULT_BRANCH,
    message_title: str = DEFAULT_TITLE,
    identity: tuple[str, str] | None = None,
) -> CommitResult:
    """Commit the fixed files on ``branch``, leaving the checkout untouched.

    The parent is the branch tip when that tip descends from HEAD (an earlier
    dfix run), otherwise HEAD itself. ``identity`` is an optional (name,
    email) for author and committer; without it git's configuration is used.
    Raises DfixError for files with the user's uncommitted changes and
    GitError when git fails.
    """
    changed = [change for change in changes if change.fixed != change.original]
    if not changed:
        return CommitResult(branch=branch, sha=None, files=(), repo_root=None)

    with _repo_of(changed) as repo:
        _refuse_bad_branch(repo, branch)
        head = head_sha(repo)
        tip = branch_sha(repo, branch)
        parent = _choose_parent(repo, head, tip)
        staged = [_stage_file(repo, change, head, parent) for change in changed]
        tree, files = _build_tree(repo, parent, staged)
        result = CommitResult(branch, None, files, repo_root(repo))
        if not files:
            logger.info("branch %s already holds these fixes", branch)
            return result

        message = format_commit_message(message_title, staged, files)
        sha = _write_commit(repo, tree, parent, message, identity)
        _move_branch(repo, branch, sha, tip)
        logger.info("committed %d file(s) on %s as %s", len(files), branch, sha)
        return CommitResult(branch, sha, files, repo_root(repo))


def format_commit_message(
    title: str, staged: Sequence[StagedFile], files: Sequence[str]
) -> str:
    """Return the title, a blank line, then one line per fix in ``files``."""
    lines = [title, ""]
    for item in sorted(staged, key=lambda item: item.relative):
        if item.relative not in files:
            continue

        lines.extend(_fix_lines(item))

    return "\n".join(lines) + "\n"


def head_sha(repo: git.Repo) -> str | None:
    """Return the commit HEAD points at, or None before the first commit."""
    return _resolve(repo, "HEAD^{commit}")


def branch_sha(repo: git.Repo, branch: str) -> str | None:
    """Return the tip of local ``branch``, or None when it does not exist."""
    return _resolve(repo, f"refs/heads/{branch}^{{commit}}")


def run_git(
    repo: git.Repo, command: str, *args: str, env: Mapping[str, str] | None = None
) -> str:
    """Run one git command through GitPython and return its stdout.

    Raises GitError carrying the command and git's stderr.
    """
    method: Any = getattr(repo.git, command.replace("-", "_"))
    full_env = {**BASE_ENV, **(env or {})}
    try:
        output: str = method(*args, env=full_env)
    except git.GitCommandError as error:
        raise GitError(
            f"git {command} failed in {repo_root(repo)}",
            ["git", command, *args],
            stderr_of(error),
        ) from error

    return output


def stderr_of(error: git.GitCommandError) -> str:
    """Return git's stderr without the framing GitPython adds to it."""
    text = str(error.stderr)
    prefix, suffix = "\n  stderr: '", "'"
    if text.startswith(prefix) and text.endswith(suffix):
        return text[len(prefix) : -len(suffix)]

    return text


def _repo_of(changes: Sequence[FileChange]) -> git.Repo:
    repo = find_repo(changes[0].path)
    root = repo_root(repo).resolve()
    for change in changes[1:]:
        with find_repo(change.path) as other:
            if repo_root(other).resolve() != root:
                repo.close()
                raise DfixError(
                    f"{change.path} is not in the repository at {root}; "
                    "run dfix --commit once per repository"
                )

    return repo


def _refuse_bad_branch(repo: git.Repo, branch: str) -> None:
    try:
        run_git(repo, "check-ref-format", f"refs/heads/{branch}")
    except GitError as error:
        raise DfixError(f"not a valid branch name: {branch!r}") from error

    # Moving a branch that some worktree has checked out would make that
    # worktree's index and files disagree with its HEAD.
    listing = run_git(repo, "worktree", "list", "--porcelain")
    if f"branch refs/heads/{branch}" in listing.splitlines():
        raise DfixError(
            f"branch {branch} is checked out; switch to another branch or "
            "choose another name with --branch"
        )


def _choose_parent(repo: git.Repo, head: str | None, tip: str | None) -> str | None:
    if tip is None:
        return head

    if head is None:
        # An earlier run in a repository without commits made a root commit.
        return tip

    try:
        run_git(repo, "merge-base", "--is-ancestor", head, tip)
    except GitError:
        logger.info("branch tip %s is not based on HEAD; starting from HEAD", tip)
        return head

    return tip


def _stage_file(
    repo: git.Repo, change: FileChange, head: str | None, parent: str | None
) -> StagedFile:
    relative = relative_path(repo, change.path)
    committed = None
    if head is not None:
        committed = _committed_entry(repo, head, relative, change.path)
        _refuse_edited_original(repo, relative, change, committed)

    _refuse_edited_index(repo, relative, change, committed)
    _refuse_edited_disk(change)
    mode = _mode_for(repo, relative, change.path, parent, committed)
    return StagedFile(relative=relative, change=change, mode=mode)


def _committed_entry(repo: git.Repo, head: str, relative: str, path: Path) -> TreeEntry:
    entry = _tree_entry(repo, head, relative)
    if entry is None:
        raise DfixError(
            f"{path} is not committed; commit it first so that the fixes can "
            "be reviewed against it"
        )

    if entry.mode in SPECIAL_MODES:
        raise DfixError(f"{path} is {SPECIAL_MODES[entry.mode]} in git; not changed")

    return entry


def _refuse_uncommitted_edits(repo: git.Repo, relative: str, path: Path) -> None:
    status = run_git(repo, "status", "--porcelain=v1", "-z", "--", relative)
    if status:
        raise _uncommitted(path)


def _refuse_edited_original(
    repo: git.Repo, relative: str, change: FileChange, committed: TreeEntry
) -> None:
    # The engine read the file before dfix wrote it; if that text is not
    # HEAD's, the user had edits that would end up in dfix's commit.
    if _hash_bytes(repo, relative, change.original, write=False) != committed.sha:
        raise _uncommitted(change.path)


def _refuse_edited_index(
    repo: git.Repo, relative: str, change: FileChange, committed: TreeEntry | None
) -> None:
    listing = run_git(repo, "ls-files", "--stage", "-z", "--", relative)
    entries = [item for item in listing.split("\0") if item]
    if committed is None and not entries:
        # Not added yet, in a repository without commits.
        return

    if committed is not None:
        expected = committed.sha
    else:
        expected = _hash_bytes(repo, relative, change.original, write=False)

    # One entry "<mode> <sha> <stage>\t<path>" at stage 0 (no conflict) whose
    # blob is the expected one means nothing is staged for this file.
    fields = entries[0].partition("\t")[0].split() if len(entries) == 1 else []
    if fields[1:] != [expected, "0"]:
        raise _uncommitted(change.path)


def _refuse_edited_disk(change: FileChange) -> None:
    try:
        on_disk = change.path.read_bytes()
    except OSError as error:
        raise DfixError(f"cannot read {change.path}: {error.strerror}") from error

    if on_disk not in (change.original, change.fixed):
        raise DfixError(f"{change.path} changed on disk while dfix ran; run dfix again")


def _uncommitted(path: Path) -> DfixError:
    return DfixError(
        f"{path} has uncommitted changes; commit or stash them first so "
        "that dfix's fixes are not mixed with your edits"
    )


def _mode_for(
    repo: git.Repo,
    relative: str,
    path: Path,
    parent: str | None,
    committed: TreeEntry | None,
) -> str:
    entry = _tree_entry(repo, parent, relative) if parent else None
    entry = entry or committed
    if entry is not None and entry.mode not in SPECIAL_MODES:
        return entry.mode

    if path.is_symlink():
        raise DfixError(f"{path} is a symbolic link; not changed")

    return EXECUTABLE_MODE if os.access(path, os.X_OK) else REGULAR_MODE


def _build_tree(
    repo: git.Repo, parent: str | None, staged: Sequence[StagedFile]
) -> tuple[str, tuple[str, ...]]:
    with tempfile.TemporaryDirectory(prefix="dfix-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if parent is None:
            run_git(repo, "read-tree", "--empty", env=env)
        else:
            run_git(repo, "read-tree", parent, env=env)

        files = []
        for item in staged:
            sha = _hash_bytes(repo, item.relative, item.change.fixed, write=True)
            before = _tree_entry(repo, parent, item.relative) if parent else None
            if before != TreeEntry(item.mode, sha):
                files.append(item.relative)

            run_git(
                repo,
                "update-index",
                "--add",
                "--cacheinfo",
                item.mode,
                sha,
                item.relative,
                env=env,
            )

        tree = run_git(repo, "write-tree", env=env)

    return tree, tuple(sorted(files))


def _hash_bytes(repo: git.Repo, relative: str, data: bytes, write: bool) -> str:
    # --path applies the same clean filters (say, core.autocrlf) that
    # "git add" would use for this file.
    with tempfile.TemporaryDirectory(prefix="dfix-") as scratch:
        blob = Path(scratch) / "blob"
        blob.write_bytes(data)
        options = ["-w"] if write else []
        return run_git(repo, "hash-object", *options, f"--path={relative}", str(blob))


def _write_commit(
    repo: git.Repo,
    tree: str,
    parent: str | None,
    message: str,
    identity: tuple[str, str] | None,
) -> str:
    parents = ["-p", parent] if parent else []
    with tempfile.TemporaryDirectory(prefix="dfix-") as scratch:
        message_file = Path(scratch) / "message"
        message_file.write_text(message, encoding="utf-8")
        try:
            return run_git(
                repo,
                "commit-tree",
                tree,
                *parents,
                "-F",
                str(message_file),
                env=_identity_env(identity),
            )
        except GitError as error:
            raise GitError(
                f"cannot create the dfix commit in {repo_root(repo)} (if git "
                "asks who you are, set user.name and user.email)",
                error.command,
                error.stderr,
            ) from error


def _identity_env(identity: tuple[str, str] | None) -> dict[str, str]:
    if identity is None:
        return {}

    name, email = identity
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _move_branch(repo: git.Repo, branch: str, sha: str, old: str | None) -> None:
    # Giving the old value makes git refuse if the branch moved meanwhile;
    # all zeros means "must not exist yet".
    expected = old if old is not None else "0" * len(sha)
    run_git(
        repo,
        "update-ref",
        "-m",
        "dfix: commit fixes",
        f"refs/heads/{branch}",
        sha,
        expected,
    )


def _resolve(repo: git.Repo, revision: str) -> str | None:
    try:
        return run_git(repo, "rev-parse", "--verify", "--quiet", revision) or None
    except GitError:
        return None


def _tree_entry(repo: git.Repo, treeish: str, relative: str) -> TreeEntry | None:
    listing = run_git(repo, "ls-tree", "-z", treeish, "--", relative)
    for item in listing.split("\0"):
        # An entry reads "<mode> <type> <sha>\t<path>".
        meta, _, name = item.partition("\t")
        if name == relative:
            mode, _, sha = meta.split()
            return TreeEntry(mode, sha)

    return None


def _fix_lines(item: StagedFile) -> Iterator[str]:
    if not item.change.fixes:
        yield f"- {item.relative}: rewritten by dfix"

    for fix in sorted(item.change.fixes, key=lambda fix: fix.line):
        yield (
            f"- {item.relative}:{fix.line}: {fix.transform}: {fix.problem}; "
            f"{fix.action} [{fix.safety}]"
        )
        if fix.review_note:
            yield f"  check: {fix.review_note}"
