"""Pushing dfix's branch, opening pull requests, and the bot.

FakeGitHub is a small HTTP server on 127.0.0.1 that stands in for GitHub's
REST API: it answers the few endpoints PyGithub calls for dfix (read the
repository, list open pull requests from a branch, create one, edit one) and
records every request so tests can check what was sent. Branches are pushed
over `git daemon` to bare repositories, as in test_gitops.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fixer.bot import BotSettings, render_summary, run_bot
from fixer.engine import FileChange
from fixer.errors import GitError, PullRequestError
from fixer.gitops import commit_changes
from fixer.pullrequest import (
    GitHubSettings,
    RemoteRepository,
    api_url_for,
    format_pr_body,
    open_or_update_pr,
    parse_remote_url,
    push_branch,
    scrub_secrets,
)
from tests.test_gitops import (  # noqa: F401 - daemon, git_config, work: fixtures
    BRANCH,
    DOCKERFILE,
    both_changes,
    daemon,
    free_port,
    git,
    git_config,
    isolate_git,
    make_work_repo,
    pip_change,
    serve_git,
    work,
)

TOKEN = "ghp_" + "Zq7sEcReT" * 4
API_PREFIX = "/api/v3"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class FakeGitHub:
    """Answers like GitHub's REST API for repositories of owner "acme"."""

    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def add_open_pull(self, head: str, title: str = "Old title") -> dict[str, Any]:
        number = len(self.pulls) + 1
        pull = {
            "number": number,
            "state": "open",
            "title": title,
            "body": "old body",
            "url": f"{self.api_url}/repos/acme/app/pulls/{number}",
            "html_url": f"https://github.invalid/acme/app/pull/{number}",
            "head": {"ref": head, "label": f"acme:{head}"},
            "base": {"ref": "main", "label": "acme:main"},
        }
        self.pulls.append(pull)
        return pull

    def answer(self, method: str, target: str, body: str) -> tuple[int, Any]:
        split = urlsplit(target)
        parts = split.path.removeprefix(API_PREFIX).strip("/").split("/")
        if len(parts) < 3 or parts[0] != "repos":
            return 404, {"message": "Not Found"}

        kind = "repo" if len(parts) == 3 else "pulls"
        if (method, kind) in self.failures:
            status, message = self.failures[method, kind]
            return status, {"message": message}

        owner, name = parts[1], parts[2]
        if method == "GET" and kind == "repo":
            return 200, self.repository(owner, name)
        if method == "GET" and parts[3:] == ["pulls"]:
            return 200, self.open_pulls(parse_qs(split.query))
        if method == "POST" and parts[3:] == ["pulls"]:
            return self.create(json.loads(body))
        if method == "PATCH" and len(parts) == 5:
            return self.edit(int(parts[4]), json.loads(body))
        return 404, {"message": "Not Found"}

    def repository(self, owner: str, name: str) -> dict[str, Any]:
        return {
            "id": 1,
            "name": name,
            "full_name": f"{owner}/{name}",
            "default_branch": "main",
            "url": f"{self.api_url}/repos/{owner}/{name}",
            "owner": {"login": owner},
        }

    def open_pulls(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        head = query.get("head", [""])[0]
        return [
            pull
            for pull in self.pulls
            if pull["state"] == "open" and pull["head"]["label"] == head
        ]

    def create(self, sent: dict[str, Any]) -> tuple[int, Any]:
        if self.open_pulls({"head": [f"acme:{sent['head']}"]}):
            return 422, {
                "message": "Validation Failed",
                "errors": [{"message": "A pull request already exists"}],
            }
        pull = self.add_open_pull(sent["head"], sent["title"])
        pull["body"] = sent["body"]
        pull["base"]["ref"] = sent["base"]
        return 201, pull

    def edit(self, number: int, sent: dict[str, Any]) -> tuple[int, Any]:
        pull = self.pulls[number - 1]
        pull.update({key: sent[key] for key in ("title", "body") if key in sent})
        return 200, pull

    def calls(self) -> list[str]:
        return [f"{item.method} {urlsplit(item.path).path}" for item in self.requests]


def make_handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            fake.requests.append(
                Recorded(self.command, self.path, dict(self.headers.items()), body)
            )
            status, answer = fake.answer(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = handle_one

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def settings(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> GitHubSettings:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    return GitHubSettings(api_url=github.api_url, retries=0, timeout=10)


def bare(daemon: tuple[Path, str], name: str = "app") -> Path:
    return daemon[0] / "acme" / f"{name}.git"


def remote_branch(daemon: tuple[Path, str], name: str = "app") -> str:
    repo = bare(daemon, name)
    return git(repo, "for-each-ref", "--format=%(objectname)", f"refs/heads/{BRANCH}")


def assert_token_only_in_authorization(github: FakeGitHub, logs: str) -> None:
    assert github.requests
    for item in github.requests:
        assert TOKEN not in item.path
        assert TOKEN not in item.body
        for name, value in item.headers.items():
            if name.lower() == "authorization":
                assert TOKEN in value
            else:
                assert TOKEN not in value
    assert TOKEN not in logs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/app.git", ("github.com", "acme", "app")),
        ("https://github.com/acme/app", ("github.com", "acme", "app")),
        ("https://github.com/acme/app/", ("github.com", "acme", "app")),
        (f"https://x:{TOKEN}@github.com/acme/app.git", ("github.com", "acme", "app")),
        ("git@github.com:acme/app.git", ("github.com", "acme", "app")),
        ("ssh://git@github.com/acme/app.git", ("github.com", "acme", "app")),
        (
            "ssh://git@ghe.corp.example:2222/acme/app",
            ("ghe.corp.example", "acme", "app"),
        ),
        ("https://ghe.corp.example/acme/app.git", ("ghe.corp.example", "acme", "app")),
        ("git://127.0.0.1:9418/acme/app.git", ("127.0.0.1", "acme", "app")),
    ],
)
def test_remote_url_names_the_repository(url: str, expected: tuple[str, ...]) -> None:
    assert parse_remote_url(url) == RemoteRepository(*expected)


def test_unusable_remote_url_is_refused_without_its_token() -> None:
    with pytest.raises(PullRequestError, match="owner/name") as caught:
        parse_remote_url(f"https://x:{TOKEN}@github.com/just-one-part")
    assert TOKEN not in str(caught.value)


def test_api_url_for_public_and_enterprise_hosts() -> None:
    assert api_url_for("github.com") == "https://api.github.com"
    assert api_url_for("ghe.corp.example") == "https://ghe.corp.example/api/v3"


def test_scrub_secrets_removes_url_credentials() -> None:
    text = f"fatal: unable to access 'https://user:{TOKEN}@github.com/acme/app.git/'"
    assert scrub_secrets(text) == (
        "fatal: unable to access 'https://***@github.com/acme/app.git/'"
    )
    assert TOKEN not in scrub_secrets(f"https://{TOKEN}@ghe.example/x/y")
    assert scrub_secrets(f"token {TOKEN} leaked", [TOKEN]) == "token *** leaked"


def test_pr_body_explains_each_fix(work: Path) -> None:
    body = format_pr_body([both_changes(work)], lambda path: path.name)

    assert "### `Dockerfile`" in body
    assert "**Line 2** · `pip-no-cache` · safe" in body
    assert "Problem: pip keeps its download cache in the image" in body
    assert "Change: add --no-cache-dir" in body
    assert "**Line 3** · `non-root-user` · **review**" in body
    assert "Check: check the app can write where it needs to" in body
    assert "2 fixes, 1 of them to review" in body


def test_push_branch_over_git_daemon(work: Path, daemon: tuple[Path, str]) -> None:
    result = commit_changes([pip_change(work)])

    push_branch(work, BRANCH)

    assert remote_branch(daemon) == result.sha


def test_push_replaces_a_branch_rebuilt_on_a_new_head(
    work: Path, daemon: tuple[Path, str]
) -> None:
    commit_changes([pip_change(work)])
    push_branch(work, BRANCH)
    (work / "app.py").write_text("print('v2')\n")
    git(work, "commit", "--quiet", "-am", "Move main on")

    rebuilt = commit_changes([pip_change(work)])
    push_branch(work, BRANCH)

    assert remote_branch(daemon) == rebuilt.sha


def test_push_refuses_to_replace_commits_it_has_not_seen(
    work: Path, daemon: tuple[Path, str], tmp_path: Path
) -> None:
    commit_changes([pip_change(work)])
    push_branch(work, BRANCH)
    other = tmp_path / "other"
    git(
        tmp_path,
        "clone",
        "--quiet",
        "--branch",
        BRANCH,
        daemon[1] + "/acme/app.git",
        str(other),
    )
    (other / "README.md").write_text("# reviewed by hand\n")
    git(other, "commit", "--quiet", "-am", "Review change")
    git(other, "push", "--quiet", "origin", BRANCH)
    theirs = remote_branch(daemon)
    (work / "app.py").write_text("print('v2')\n")
    git(work, "commit", "--quiet", "-am", "Move main on")
    mine = commit_changes([pip_change(work)])

    with pytest.raises(GitError, match="cannot push branch dfix/fixes") as caught:
        push_branch(work, BRANCH)

    assert "stale info" in str(caught.value)
    assert remote_branch(daemon) == theirs
    assert git(work, "rev-parse", BRANCH) == mine.sha


def test_push_failure_never_shows_the_token(
    work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    commit_changes([pip_change(work)])
    closed = free_port()
    url = f"https://x-access-token:{TOKEN}@127.0.0.1:{closed}/acme/app.git"
    git(work, "remote", "set-url", "origin", url)

    with pytest.raises(GitError, match="cannot push branch") as caught:
        push_branch(work, BRANCH, token=TOKEN)

    error = caught.value
    assert TOKEN not in str(error)
    assert TOKEN not in error.stderr
    assert TOKEN not in " ".join(error.command)
    assert TOKEN not in caplog.text
    assert git(work, "rev-parse", "--verify", BRANCH)


def test_open_creates_a_pull_request(
    work: Path,
    daemon: tuple[Path, str],
    github: FakeGitHub,
    settings: GitHubSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    change = both_changes(work)
    commit_changes([change])
    push_branch(work, BRANCH)

    result = open_or_update_pr(work, BRANCH, [change], settings=settings)

    assert result.created
    assert result.number == 1
    assert result.url == "https://github.invalid/acme/app/pull/1"
    assert github.calls() == [
        "GET /api/v3/repos/acme/app",
        "GET /api/v3/repos/acme/app/pulls",
        "POST /api/v3/repos/acme/app/pulls",
    ]
    query = parse_qs(urlsplit(github.requests[1].path).query)
    assert query == {"state": ["open"], "head": [f"acme:{BRANCH}"]}
    sent = json.loads(github.requests[2].body)
    assert sent["base"] == "main"
    assert sent["head"] == BRANCH
    assert sent["title"] == "Apply dfix fixes"
    assert "Check: check the app can write where it needs to" in sent["body"]
    assert_token_only_in_authorization(github, caplog.text)


def test_open_updates_the_existing_pull_request(
    work: Path,
    daemon: tuple[Path, str],
    github: FakeGitHub,
    settings: GitHubSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    github.add_open_pull("someone-else")
    github.add_open_pull(BRANCH)
    change = pip_change(work)
    commit_changes([change])
    push_branch(work, BRANCH)

    result = open_or_update_pr(
        work, BRANCH, [change], title="Fix Dockerfiles", settings=settings
    )

    assert not result.created
    assert result.number == 2
    assert github.calls()[-1] == "PATCH /api/v3/repos/acme/app/pulls/2"
    assert "POST" not in " ".join(github.calls())
    assert github.pulls[1]["title"] == "Fix Dockerfiles"
    assert "`pip-no-cache`" in github.pulls[1]["body"]
    assert github.pulls[0]["title"] == "Old title"
    assert_token_only_in_authorization(github, caplog.text)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (500, "Server Error", "into main: the server kept failing (too many 500"),
        (422, "Validation Failed", "422 Validation Failed"),
    ],
)
def test_api_failure_is_a_clear_error_and_keeps_the_branch(
    work: Path,
    github: FakeGitHub,
    settings: GitHubSettings,
    caplog: pytest.LogCaptureFixture,
    status: int,
    message: str,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    github.failures["POST", "pulls"] = (status, message)
    result = commit_changes([pip_change(work)])

    with pytest.raises(PullRequestError, match="GitHub API failed") as caught:
        open_or_update_pr(work, BRANCH, [pip_change(work)], settings=settings)

    assert expected in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert git(work, "rev-parse", BRANCH) == result.sha
    assert_token_only_in_authorization(github, caplog.text)


def test_unreadable_repository_names_the_step(
    work: Path, github: FakeGitHub, settings: GitHubSettings
) -> None:
    github.failures["GET", "repo"] = (404, "Not Found")

    with pytest.raises(PullRequestError, match="reading repository acme/app: 404"):
        open_or_update_pr(work, BRANCH, [pip_change(work)], settings=settings)


def test_missing_token_is_a_clear_error(
    work: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DFIX_TOKEN", raising=False)
    settings = GitHubSettings(api_url=github.api_url, token_variable="DFIX_TOKEN")

    with pytest.raises(PullRequestError, match="set the DFIX_TOKEN environment"):
        open_or_update_pr(work, BRANCH, [pip_change(work)], settings=settings)
    assert github.requests == []


def fix_pip(checkout: Path) -> list[FileChange]:
    """Stand in for the engine: fix pip installs and write the file."""
    change = pip_change(checkout)
    if b"--no-cache-dir" in change.original:
        return []
    change.path.write_bytes(change.fixed)
    return [change]


def seed(daemon: tuple[Path, str], tmp_path: Path, name: str, text: bytes) -> str:
    """Create acme/<name>.git on the daemon holding one Dockerfile."""
    url = f"{daemon[1]}/acme/{name}.git"
    repo = bare(daemon, name)
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(repo))
    seeding = tmp_path / f"seed-{name}"
    git(tmp_path, "clone", "--quiet", url, str(seeding))
    (seeding / "Dockerfile").write_bytes(text)
    git(seeding, "add", "Dockerfile")
    git(seeding, "commit", "--quiet", "-m", "Initial commit")
    git(seeding, "push", "--quiet", "origin", "main")
    return url


@pytest.fixture
def fleet(work: Path, daemon: tuple[Path, str], tmp_path: Path) -> list[str]:
    """URLs of a repository to fix, one that is missing, and a clean one."""
    clean = DOCKERFILE.replace(b"pip install", b"pip install --no-cache-dir")
    return [
        f"{daemon[1]}/acme/app.git",
        f"{daemon[1]}/acme/missing.git",
        seed(daemon, tmp_path, "clean", clean),
    ]


def test_bot_dry_run_opens_nothing(
    fleet: list[str],
    daemon: tuple[Path, str],
    github: FakeGitHub,
    settings: GitHubSettings,
) -> None:
    results = run_bot(
        fleet, fix_pip, dry_run=True, settings=BotSettings(github=settings)
    )

    assert [result.status for result in results] == [
        "would-open",
        "failed",
        "no-fixes",
    ]
    assert results[0].detail == "1 fix in 1 file, 0 to review"
    assert "cannot clone" in results[1].detail
    assert github.requests == []
    assert remote_branch(daemon) == ""


def test_bot_opens_then_updates_pull_requests(
    fleet: list[str],
    daemon: tuple[Path, str],
    github: FakeGitHub,
    settings: GitHubSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = BotSettings(github=settings, identity=("dfix bot", "bot@example.invalid"))

    first = run_bot(fleet, fix_pip, settings=bot)
    pushed = remote_branch(daemon)
    second = run_bot(fleet, fix_pip, settings=bot)

    assert [result.status for result in first] == ["opened", "failed", "no-fixes"]
    assert first[0].pr_url == "https://github.invalid/acme/app/pull/1"
    assert pushed
    assert git(bare(daemon), "log", "-1", "--format=%an", BRANCH) == "dfix bot"
    assert [result.status for result in second] == ["updated", "failed", "no-fixes"]
    assert remote_branch(daemon) == pushed
    assert remote_branch(daemon, "clean") == ""
    assert len(github.pulls) == 1
    assert_token_only_in_authorization(github, caplog.text)


def test_render_summary_has_a_row_per_repository(fleet: list[str]) -> None:
    results = run_bot(fleet, fix_pip, dry_run=True)

    table = render_summary(results)

    assert table.row_count == 3
    assert [column.header for column in table.columns] == [
        "Repository",
        "Status",
        "Detail",
        "Pull request",
    ]
