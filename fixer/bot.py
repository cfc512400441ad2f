"""Bot mode: fix many repositories and open a pull request in each.

Each repository is cloned shallowly into a temporary directory, fixed by the
supplied callable, committed on dfix's branch, pushed and given a pull
request. A repository that fails is recorded as failed and the others go on.
Nothing is printed here; the caller renders the results.

The bot owns its branch on each remote: a run rebuilds it from the default
branch and replaces the remote one, unless that moved since the bot fetched
it at the start of the run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import git
from rich.table import Table

from fixer.errors import DfixError, GitError
from fixer.gitops import (
    DEFAULT_BRANCH,
    DEFAULT_TITLE,
    commit_changes,
    run_git,
    stderr_of,
)
from fixer.pullrequest import (
    GitHubSettings,
    auth_env,
    open_or_update_pr,
    push_branch,
    scrub_secrets,
)

if TYPE_CHECKING:
    from fixer.engine import FileChange

logger = logging.getLogger(__name__)

Status = Literal["opened", "updated", "no-fixes", "would-open", "failed"]
FixRepo = Callable[[Path], list["FileChange"]]

STATUS_STYLES: dict[Status, str] = {
    "opened": "green",
    "updated": "green",
    "no-fixes": "dim",
    "would-open": "cyan",
    "failed": "red",
}

# A clone that needs credentials it was not given fails instead of waiting
# for someone to type a password.
NO_PROMPT_ENV = {"GIT_TERMINAL_PROMPT": "0"}


@dataclass(frozen=True)
class BotSettings:
    """How the bot names its branch and commits, and reaches GitHub.

    ``identity`` is the (name, email) of the bot's commits; None uses git's
    configuration.
    """

    branch: str = DEFAULT_BRANCH
    title: str = DEFAULT_TITLE
    identity: tuple[str, str] | None = None
    github: GitHubSettings = field(default_factory=GitHubSettings)


@dataclass(frozen=True)
class RepoResult:
    """What the bot did for one repository."""

    url: str
    status: Status
    detail: str
    pr_url: str | None = None


def run_bot(
    urls: Sequence[str],
    fix_repo: FixRepo,
    *,
    dry_run: bool = False,
    settings: BotSettings | None = None,
) -> list[RepoResult]:
    """Fix each repository in ``urls`` and return one result per URL.

    With ``dry_run`` nothing is committed, pushed or opened; the results say
    which pull requests would be opened.
    """
    settings = settings or BotSettings()
    return [_process_safely(url, fix_repo, dry_run, settings) for url in urls]


def render_summary(results: Sequence[RepoResult]) -> Table:
    """Return a table of the results, one row per repository."""
    table = Table(title="dfix bot")
    table.add_column("Repository")
    table.add_column("Status")
    table.add_column("Detail")
    table.add_column("Pull request")
    for result in results:
        style = STATUS_STYLES[result.status]
        status = f"[{style}]{result.status}[/{style}]"
        table.add_row(result.url, status, result.detail, result.pr_url or "")
    return table


def clone_shallow(url: str, destination: Path, token: str | None = None) -> git.Repo:
    """Clone the default branch of ``url`` with a history of one commit."""
    env = {**NO_PROMPT_ENV, **auth_env(url, token)}
    try:
        return git.Repo.clone_from(url, destination, depth=1, env=env)
    except git.GitCommandError as error:
        stderr = scrub_secrets(stderr_of(error), [token] if token else [])
        raise GitError(
            f"cannot clone {scrub_secrets(url)}", ["git", "clone"], stderr
        ) from error


def _process_safely(
    url: str, fix_repo: FixRepo, dry_run: bool, settings: BotSettings
) -> RepoResult:
    shown = scrub_secrets(url)
    try:
        return _process(url, fix_repo, dry_run, settings)
    except DfixError as error:
        logger.info("%s failed: %s", shown, error)
        return RepoResult(shown, "failed", str(error))
    except Exception as error:
        # A bug on one repository's Dockerfiles must not stop the others.
        logger.exception("dfix failed on %s", shown)
        return RepoResult(shown, "failed", f"internal error: {error!r}")


def _process(
    url: str, fix_repo: FixRepo, dry_run: bool, settings: BotSettings
) -> RepoResult:
    shown = scrub_secrets(url)
    token = _token_or_none(settings.github.token_variable)
    with tempfile.TemporaryDirectory(prefix="dfix-bot-") as scratch:
        checkout = Path(scratch) / "repo"
        clone_shallow(url, checkout, token).close()
        changes = [c for c in fix_repo(checkout) if c.fixed != c.original]
        if not changes:
            return RepoResult(shown, "no-fixes", "nothing to fix")

        summary = _describe(changes)
        if dry_run:
            return RepoResult(shown, "would-open", summary)

        return _publish(checkout, shown, changes, summary, settings, token)


def _publish(
    checkout: Path,
    shown: str,
    changes: list[FileChange],
    summary: str,
    settings: BotSettings,
    token: str | None,
) -> RepoResult:
    remote_tree = _fetch_remote_branch(checkout, settings.branch, token)
    commit = commit_changes(
        changes, settings.branch, settings.title, identity=settings.identity
    )
    if commit.sha is None:
        return RepoResult(shown, "no-fixes", "nothing to commit")

    if remote_tree != _tree_of(checkout, settings.branch):
        push_branch(checkout, settings.branch, token=token)
    else:
        logger.info("%s: the remote branch already holds these fixes", shown)

    pull = open_or_update_pr(
        checkout,
        settings.branch,
        changes,
        title=settings.title,
        settings=settings.github,
    )
    status: Status = "opened" if pull.created else "updated"
    return RepoResult(shown, status, summary, pull.url)


def _fetch_remote_branch(checkout: Path, branch: str, token: str | None) -> str | None:
    """Fetch the bot's branch if the remote has it; return its tree."""
    with git.Repo(checkout) as repo:
        origin = repo.remote("origin")
        env = {**NO_PROMPT_ENV, **auth_env(origin.url, token)}
        with repo.git.custom_environment(**env):
            listed = run_git(repo, "ls-remote", "--heads", "origin", branch)
            if not listed:
                return None

            tracking = f"refs/remotes/origin/{branch}"
            run_git(repo, "fetch", "--depth=1", "origin", f"+{branch}:{tracking}")

        return run_git(repo, "rev-parse", f"{tracking}^{{tree}}")


def _tree_of(checkout: Path, branch: str) -> str:
    with git.Repo(checkout) as repo:
        return run_git(repo, "rev-parse", f"refs/heads/{branch}^{{tree}}")


def _token_or_none(variable: str) -> str | None:
    # The API calls need the token and say so; a clone or push over ssh or
    # through a credential helper may well work without it.
    return os.environ.get(variable) or None


def _describe(changes: Sequence[FileChange]) -> str:
    fixes = [fix for change in changes for fix in change.fixes]
    review = sum(1 for fix in fixes if fix.safety != "safe")
    return (
        f"{_count(len(fixes), 'fix', 'fixes')} in {_count(len(changes), 'file')}, "
        f"{review} to review"
    )


def _count(number: int, singular: str, plural: str = "") -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
