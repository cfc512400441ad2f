"""Push dfix's branch and open or update its pull request on GitHub.

The repository on GitHub is the one the remote's URL names (https or ssh,
github.com or GitHub Enterprise). The pull request goes from dfix's branch
into the repository's default branch; when one is already open from that
branch, its title and body are updated instead.

The token comes from an environment variable (GITHUB_TOKEN unless configured)
and is never printed or logged; messages built from git's output have any
credentials in URLs removed.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import git
import requests
from github import Auth, Github, GithubException, GithubRetry
from github.PullRequest import PullRequest
from github.Repository import Repository

from fixer.errors import GitError, PullRequestError
from fixer.gitops import (
    DEFAULT_TITLE,
    branch_sha,
    find_repo,
    relative_path,
    run_git,
    stderr_of,
)

if TYPE_CHECKING:
    from fixer.engine import FileChange, FixRecord

logger = logging.getLogger(__name__)

PUBLIC_HOST = "github.com"
PUBLIC_API_URL = "https://api.github.com"

# The user-information part of a URL, as in https://user:TOKEN@host/ or
# https://TOKEN@host/.
URL_CREDENTIALS_RE = re.compile(
    r"""
    (?P<scheme>[a-z][a-z0-9+.-]*://)   # https://, ssh://, git://
    [^/@\s]+@                          # user, user:password or token, then @
    """,
    re.IGNORECASE | re.VERBOSE,
)

# "git@host:owner/name.git", the scp-like form ssh remotes usually take.
SCP_REMOTE_RE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>[^/].*)$")


@dataclass(frozen=True)
class GitHubSettings:
    """Where the GitHub API is and how to authenticate to it.

    ``api_url`` None means: https://api.github.com for github.com remotes,
    https://<host>/api/v3 for any other host (GitHub Enterprise).
    """

    api_url: str | None = None
    token_variable: str = "GITHUB_TOKEN"
    timeout: int = 30
    retries: int = 3


@dataclass(frozen=True)
class RemoteRepository:
    """A repository on a GitHub host, as named by a remote URL."""

    host: str
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class PullRequestResult:
    """The pull request dfix opened (created) or updated."""

    number: int
    url: str
    created: bool
    base: str = ""


def push_branch(
    repo_path: Path,
    branch: str,
    remote: str = "origin",
    *,
    token: str | None = None,
) -> None:
    """Push local ``branch`` to the same name on ``remote``.

    The remote branch may be replaced (dfix rebuilds its branch when HEAD
    moves on), but only if it is still where this clone last saw it: the
    remote-tracking ref, or absent when there is none. A ``token`` is sent
    as an HTTP header for https remotes, never on the command line.
    Raises GitError when the push fails; the local branch is kept.
    """
    with find_repo(repo_path) as repo:
        if branch_sha(repo, branch) is None:
            raise GitError(f"no local branch {branch} to push")

        url = remote_url(repo, remote)
        expected = _tracking_sha(repo, remote, branch) or ""
        refspec = f"refs/heads/{branch}:refs/heads/{branch}"
        lease = f"refs/heads/{branch}:{expected}"
        secrets = [token] if token else []
        with repo.git.custom_environment(**auth_env(url, token)):
            try:
                infos = repo.remote(remote).push(refspec, force_with_lease=lease)
            except git.GitCommandError as error:
                raise _push_error(branch, remote, stderr_of(error), secrets) from error

        _check_push(infos, branch, remote, secrets)
        logger.info("pushed %s to %s", branch, remote)


def open_or_update_pr(
    repo_path: Path,
    branch: str,
    changes: Sequence[FileChange],
    *,
    remote: str = "origin",
    title: str = DEFAULT_TITLE,
    settings: GitHubSettings | None = None,
) -> PullRequestResult:
    """Open a pull request from ``branch``, or update the open one.

    Raises PullRequestError when the token is missing or an API request
    fails; nothing local is changed either way.
    """
    settings = settings or GitHubSettings()
    with find_repo(repo_path) as repo:
        target = parse_remote_url(remote_url(repo, remote))
        body = format_pr_body(changes, lambda path: relative_path(repo, path))

    token = read_token(settings.token_variable)
    api_url = settings.api_url or api_url_for(target.host)
    client = Github(
        auth=Auth.Token(token),
        base_url=api_url,
        timeout=settings.timeout,
        retry=GithubRetry(total=settings.retries),
    )
    try:
        return _open_or_update(client, target, branch, title, body, token)
    finally:
        client.close()


def parse_remote_url(url: str) -> RemoteRepository:
    """Return the host, owner and name a GitHub remote URL points at.

    Accepts https://host/owner/name(.git), ssh://git@host(:port)/owner/name,
    git@host:owner/name.git and git://host/owner/name.git.
    """
    split = urlsplit(url)
    if split.scheme and split.hostname:
        host, path = split.hostname, split.path
    elif match := SCP_REMOTE_RE.match(url):
        host, path = match["host"], match["path"]
    else:
        raise PullRequestError(f"cannot tell the GitHub repository from {_scrub(url)}")

    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) != 2:
        raise PullRequestError(
            f"cannot tell the GitHub repository from {_scrub(url)}: "
            "expected a path of the form owner/name"
        )

    owner, name = parts
    return RemoteRepository(host=host, owner=owner, name=name.removesuffix(".git"))


def api_url_for(host: str) -> str:
    """Return the REST API URL for a GitHub host."""
    if host.lower() in (PUBLIC_HOST, f"www.{PUBLIC_HOST}"):
        return PUBLIC_API_URL

    return f"https://{host}/api/v3"


def read_token(variable: str = "GITHUB_TOKEN") -> str:
    """Return the token in environment variable ``variable``."""
    token = os.environ.get(variable, "").strip()
    if not token:
        raise PullRequestError(
            f"no GitHub token: set the {variable} environment variable to a "
            "token that may push and open pull requests"
        )

    return token


def remote_url(repo: git.Repo, remote: str) -> str:
    """Return the URL of ``remote``; raise GitError when it is not set up."""
    try:
        return str(repo.remote(remote).url)
    except ValueError as error:
        raise GitError(f"no remote named {remote!r} in this repository") from error


def auth_env(url: str, token: str | None) -> dict[str, str]:
    """Return environment variables that send ``token`` to an https remote.

    The header goes through GIT_CONFIG_COUNT, so it is in no command line,
    and it is scoped to the remote's host.
    """
    split = urlsplit(url)
    if not token or split.scheme != "https" or not split.hostname:
        return {}

    count = int(os.environ.get("GIT_CONFIG_COUNT", "0") or "0")
    credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": f"http.https://{split.hostname}/.extraheader",
        f"GIT_CONFIG_VALUE_{count}": f"AUTHORIZATION: basic {credentials}",
    }


def scrub_secrets(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove URL credentials and the given secret values from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")

    return _scrub(text)


def format_pr_body(
    changes: Sequence[FileChange], display: Callable[[Path], str] | None = None
) -> str:
    """Return the pull request body: every fix with its file, line and why.

    ``display`` turns a file's path into the name shown; by default the path
    is shown as it is.
    """
    name_of = display or (lambda path: path.as_posix())
    changed = [change for change in changes if change.fixed != change.original]
    fixes = [fix for change in changed for fix in change.fixes]
    review = sum(1 for fix in fixes if fix.safety != "safe")
    lines = [
        f"dfix rewrote {_count(len(changed), 'Dockerfile')} to follow container "
        f"best practice: {_count(len(fixes), 'fix', 'fixes')}, {review} of them "
        "to review.",
        "",
        "**Safe** fixes build an image with the same files, metadata and "
        "behaviour. **Review** fixes change what gets built or how the "
        "container runs; each one says what to check.",
    ]
    for change in sorted(changed, key=lambda change: name_of(change.path)):
        lines.extend(["", f"### `{name_of(change.path)}`", ""])
        lines.extend(_fix_items(change.fixes))

    lines.extend(["", "---", "Opened by dfix; running it again updates this PR."])
    return "\n".join(lines) + "\n"


def _open_or_update(
    client: Github,
    target: RemoteRepository,
    branch: str,
    title: str,
    body: str,
    token: str,
) -> PullRequestResult:
    with _api_step(f"reading repository {target.full_name}", token):
        repository = client.get_repo(target.full_name)
        base = repository.default_branch

    with _api_step(f"listing open pull requests from {branch}", token):
        existing = _open_pull_from(repository, target.owner, branch)

    if existing is not None:
        with _api_step(f"updating pull request #{existing.number}", token):
            existing.edit(title=title, body=body)
        logger.info("updated pull request #%d", existing.number)
        return PullRequestResult(existing.number, existing.html_url, False, base)

    with _api_step(f"opening a pull request from {branch} into {base}", token):
        created = repository.create_pull(base=base, head=branch, title=title, body=body)
    logger.info("opened pull request #%d", created.number)
    return PullRequestResult(created.number, created.html_url, True, base)


def _open_pull_from(
    repository: Repository, owner: str, branch: str
) -> PullRequest | None:
    pulls = repository.get_pulls(state="open", head=f"{owner}:{branch}")
    for pull in pulls:
        # The filter is the server's; check the branch in case it ignored it.
        if pull.head.ref == branch:
            return pull

    return None


@contextmanager
def _api_step(step: str, token: str) -> Iterator[None]:
    """Turn a failed API request into PullRequestError naming the step."""
    logger.debug("GitHub API: %s", step)
    try:
        yield
    except GithubException as error:
        detail = _github_detail(error)
        raise PullRequestError(_failed(step, detail, token)) from error
    except requests.exceptions.RetryError as error:
        detail = f"the server kept failing ({_retry_reason(error)})"
        raise PullRequestError(_failed(step, detail, token)) from error
    except requests.RequestException as error:
        detail = f"cannot reach the GitHub API ({type(error).__name__})"
        raise PullRequestError(_failed(step, detail, token)) from error


def _retry_reason(error: requests.exceptions.RetryError) -> str:
    # requests wraps urllib3's MaxRetryError, whose reason reads like "too
    # many 500 error responses".
    cause = error.args[0] if error.args else None
    return str(getattr(cause, "reason", None) or "gave up after retries")


def _failed(step: str, detail: str, token: str) -> str:
    return scrub_secrets(f"GitHub API failed {step}: {detail}", [token])


def _github_detail(error: GithubException) -> str:
    data = error.data if isinstance(error.data, dict) else {}
    parts = [str(error.status), str(data.get("message", "")).strip()]
    for item in data.get("errors", []) or []:
        if isinstance(item, dict) and item.get("message"):
            parts.append(str(item["message"]))
    return " ".join(part for part in parts if part)


def _tracking_sha(repo: git.Repo, remote: str, branch: str) -> str | None:
    try:
        return run_git(
            repo, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{branch}"
        )
    except GitError:
        return None


def _check_push(
    infos: git.remote.PushInfoList, branch: str, remote: str, secrets: list[str]
) -> None:
    failed = [info for info in infos if info.flags & info.ERROR]
    if infos and not failed and infos.error is None:
        return

    summary = "; ".join(info.summary.strip() for info in failed)
    if isinstance(infos.error, git.GitCommandError):
        summary = summary or stderr_of(infos.error)
    if "stale info" in summary or "fetch first" in summary:
        summary += (
            f" (the remote branch changed since dfix last pushed it; fetch it "
            f"with 'git fetch {remote} {branch}' or choose another --branch)"
        )
    raise _push_error(branch, remote, summary or "nothing was pushed", secrets)


def _push_error(branch: str, remote: str, detail: str, secrets: list[str]) -> GitError:
    clean = scrub_secrets(detail, secrets)
    return GitError(
        f"cannot push branch {branch} to {remote}; the local branch is kept",
        ["git", "push", remote, branch],
        clean,
    )


def _scrub(text: str) -> str:
    return URL_CREDENTIALS_RE.sub(r"\g<scheme>***@", text)


def _fix_items(fixes: Sequence[FixRecord]) -> Iterator[str]:
    if not fixes:
        yield "- Rewritten by dfix."

    for fix in sorted(fixes, key=lambda fix: fix.line):
        label = "safe" if fix.safety == "safe" else "**review**"
        yield f"- **Line {fix.line}** · `{fix.transform}` · {label}"
        yield f"  - Problem: {_markdown(fix.problem)}"
        yield f"  - Change: {_markdown(fix.action)}"
        if fix.review_note:
            yield f"  - Check: {_markdown(fix.review_note)}"


def _markdown(text: str) -> str:
    # Messages are plain text; keep "*", "_", "<" and the like literal.
    return re.sub(r"([\\`*_<>\[\]|#])", r"\\\1", text)


def _count(number: int, singular: str, plural: str = "") -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
