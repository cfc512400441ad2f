"""The dfix command line: the only place that chooses exit codes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pathlib
import sys
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

import typer

from fixer import files
from fixer.config import Config, config_for
from fixer.diff import unified_diff
from fixer.edits import Settings
from fixer.engine import FileChange, FileResult, Selection, fix_text
from fixer.errors import DfixError, InputError, ParseError
from fixer.report import Reporter, print_text
from transforms import ALL, by_name

logger = logging.getLogger(__name__)

EXIT_CLEAN = 0
EXIT_FIXES = 1
EXIT_ERROR = 2
EXIT_BUG = 3
PARALLEL_THRESHOLD = 64
MAX_WORKERS = 8
CHUNK_SIZE = 16
SUBCOMMANDS = ("fix", "rules", "explain", "pr", "bot")
KNOWN_NAMES = frozenset(transform.NAME for transform in ALL)

SelectOption = Annotated[
    list[str] | None,
    typer.Option(
        "--select", help="Run only these transforms (repeat or comma-separate)."
    ),
]
IgnoreOption = Annotated[
    list[str] | None, typer.Option("--ignore", help="Do not run these transforms.")
]
SafeOption = Annotated[
    bool,
    typer.Option("--safe", help="Apply only fixes that cannot change the image."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")]

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    help="Rewrite Dockerfiles to follow container security and size practice.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Format(StrEnum):
    text = "text"
    json = "json"


@dataclass(frozen=True)
class Outcome:
    """One file's analysis: its text and result, or the error it gave."""

    source: files.SourceText | None = None
    result: FileResult | None = None
    error: str | None = None


@dataclass
class Run:
    """One invocation's choices, shared by the fix, pr and bot commands."""

    mode: str
    choice: Selection  # from the command line; configuration adds to it
    reporter: Reporter
    changes: list[FileChange] = field(default_factory=list)
    deferred: list[tuple[files.Target, files.SourceText, FileResult]] = field(
        default_factory=list
    )
    pending: bool = False
    failed: bool = False


def main() -> None:
    """Entry point: ``dfix PATH...`` means ``dfix fix PATH...``."""
    arguments = sys.argv[1:]
    if not arguments or arguments[0] not in SUBCOMMANDS:
        arguments = ["fix", *arguments]
    try:
        app(arguments, prog_name="dfix")
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - the last line of defence prints a report
        traceback.print_exc()
        sys.stderr.write(
            "dfix: internal error; please report it with the traceback above "
            "and the file that caused it\n"
        )
        sys.exit(EXIT_BUG)


@app.command("fix")
def fix_command(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Files or folders to fix; '-' reads stdin. Default: '.'"),
    ] = None,
    diff: Annotated[
        bool,
        typer.Option(
            "--diff", help="Print unified diffs of pending fixes (the default)."
        ),
    ] = False,
    write: Annotated[
        bool, typer.Option("--write", "-w", help="Rewrite files in place.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 when any fix is pending; print no diff."),
    ] = False,
    select: SelectOption = None,
    ignore: IgnoreOption = None,
    safe: SafeOption = False,
    output_format: Annotated[
        Format,
        typer.Option("--format", help="Report as text on stderr or as JSON on stdout."),
    ] = Format.text,
    commit: Annotated[
        bool,
        typer.Option(
            "--commit", help="With --write: commit the fixed files on a branch."
        ),
    ] = False,
    branch: Annotated[
        str, typer.Option("--branch", help="Branch for --commit.")
    ] = "dfix/fixes",
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Do not list the places left unchanged."),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Fix Dockerfiles: show diffs (default), write them, or check for CI.

    Other commands: dfix rules, dfix explain NAME, dfix pr, dfix bot URL...
    (each with --help).
    """
    _set_up_logging(verbose)
    if sum((diff, write, check)) > 1:
        _usage("choose one of --diff, --write and --check")
    if commit and not write:
        _usage("--commit needs --write")
    mode = "write" if write else "check" if check else "diff"
    targets = paths or ["."]
    run = _make_run(mode, select, ignore, safe, output_format)
    run.reporter.mode = mode
    run.reporter.quiet = quiet
    if targets == ["-"]:
        raise typer.Exit(_fix_stdin(run, explicit_diff=diff))
    if "-" in targets:
        _usage("'-' (stdin) cannot be combined with other paths")
    if commit:
        # Find the fixes first, refuse files with the user's own edits, and
        # only then write and commit.
        run.mode = "pr"
        _fix_paths(targets, run)
        if run.changes and not run.failed:
            _write_then_commit(run, branch)
    else:
        _fix_paths(targets, run)
    run.reporter.finish()
    raise typer.Exit(_exit_code(run))


@app.command("rules")
def rules_command() -> None:
    """List the transforms, their safety and summary, in the order they run."""
    width = max(len(transform.NAME) for transform in ALL)
    lines = []
    for transform in ALL:
        summary = (transform.__doc__ or "").strip().splitlines()[0]
        safety = "review" if transform.SAFETY.value == "review" else "safe"
        opt_in = " (opt-in)" if getattr(transform, "OPT_IN", False) else ""
        lines.append(f"{transform.NAME:<{width}}  {safety:<6}  {summary}{opt_in}\n")
    print_text("".join(lines))


@app.command("explain")
def explain_command(
    name: Annotated[str, typer.Argument(help="A transform name from 'dfix rules'.")],
) -> None:
    """Print a transform's documentation."""
    transform = by_name(name)
    if transform is None:
        _usage(f"unknown transform '{name}'; 'dfix rules' lists them")
        return
    print_text(f"{transform.NAME}\n\n{(transform.__doc__ or '').strip()}\n")


@app.command("pr")
def pr_command(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or folders. Default: '.'")
    ] = None,
    branch: Annotated[str, typer.Option("--branch", help="Branch to push.")] = (
        "dfix/fixes"
    ),
    remote: Annotated[str, typer.Option("--remote", help="Remote to push to.")] = (
        "origin"
    ),
    title: Annotated[str, typer.Option("--title", help="Pull request title.")] = (
        "Apply dfix fixes"
    ),
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="GitHub API URL (GitHub Enterprise)."),
    ] = None,
    token_variable: Annotated[
        str,
        typer.Option("--token-variable", help="Environment variable of the token."),
    ] = "GITHUB_TOKEN",
    select: SelectOption = None,
    ignore: IgnoreOption = None,
    safe: SafeOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Commit the fixes on a branch, push it and open or update a pull request.

    The working tree is not changed: the commit is built in a temporary index.
    """
    from fixer import gitops, pullrequest

    _set_up_logging(verbose)
    run = _make_run("pr", select, ignore, safe, Format.text)
    _fix_paths(paths or ["."], run)
    run.reporter.finish()
    if run.failed:
        raise typer.Exit(EXIT_ERROR)
    if not run.changes:
        raise typer.Exit(EXIT_CLEAN)
    settings = pullrequest.GitHubSettings(
        api_url=api_url, token_variable=token_variable
    )
    try:
        result = gitops.commit_changes(run.changes, branch=branch, message_title=title)
        assert result.repo_root is not None
        pullrequest.push_branch(result.repo_root, branch, remote)
        opened = pullrequest.open_or_update_pr(
            result.repo_root,
            branch,
            run.changes,
            remote=remote,
            title=title,
            settings=settings,
        )
    except DfixError as error:
        run.reporter.error(str(error))
        raise typer.Exit(EXIT_ERROR) from error
    verb = "opened" if opened.created else "updated"
    run.reporter.info(f"{verb} pull request #{opened.number}: {opened.url}")


@app.command("bot")
def bot_command(
    urls: Annotated[list[str], typer.Argument(help="Clone URLs of repositories.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be opened.")
    ] = False,
    branch: Annotated[str, typer.Option("--branch")] = "dfix/fixes",
    title: Annotated[str, typer.Option("--title")] = "Apply dfix fixes",
    api_url: Annotated[str | None, typer.Option("--api-url")] = None,
    token_variable: Annotated[str, typer.Option("--token-variable")] = ("GITHUB_TOKEN"),
    select: SelectOption = None,
    ignore: IgnoreOption = None,
    safe: SafeOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Clone each repository, fix it and offer the fixes as a pull request."""
    from rich.console import Console

    from fixer import bot, pullrequest

    _set_up_logging(verbose)

    def fix_repo(path: pathlib.Path) -> list[FileChange]:
        run = _make_run("write", select, ignore, safe, Format.text)
        for target in files.find_targets(path):
            _finish_target(target, _analyse(target, run.choice), run)
        return run.changes

    settings = bot.BotSettings(
        branch=branch,
        title=title,
        github=pullrequest.GitHubSettings(
            api_url=api_url, token_variable=token_variable
        ),
    )
    results = bot.run_bot(urls, fix_repo, dry_run=dry_run, settings=settings)
    plain = bool(os.environ.get("NO_COLOR"))
    Console(stderr=True, no_color=plain, color_system=None if plain else "auto").print(
        bot.render_summary(results)
    )
    failed = any(result.status == "failed" for result in results)
    raise typer.Exit(EXIT_ERROR if failed else EXIT_CLEAN)


def _make_run(
    mode: str,
    select: list[str] | None,
    ignore: list[str] | None,
    safe: bool,
    output_format: Format,
) -> Run:
    return Run(
        mode=mode,
        choice=Selection(select=_names(select), ignore=_names(ignore), safe_only=safe),
        reporter=Reporter(
            mode="stdin" if mode == "stdin" else mode, output_format=output_format.value
        ),
    )


def _names(values: list[str] | None) -> frozenset[str]:
    names = frozenset(
        name.strip()
        for value in values or []
        for name in value.split(",")
        if name.strip()
    )
    unknown = sorted(names - KNOWN_NAMES)
    if unknown:
        _usage(f"unknown transform {', '.join(unknown)}; 'dfix rules' lists them")
    return names


def _selection(choice: Selection, config: Config) -> Selection:
    """Merge the command line's choice with a file's configuration."""
    return Selection(
        select=choice.select or config.select,
        ignore=choice.ignore | config.ignore,
        safe_only=choice.safe_only or config.safe_only,
    )


def _fix_stdin(run: Run, explicit_diff: bool) -> int:
    """Fix stdin: print the fixed text, or with --diff a diff, or with
    --check nothing; --diff and --check exit 1 when fixes are pending."""
    raw = sys.stdin.buffer.read()
    try:
        source = files.decode_source(raw, "<stdin>")
        config = config_for(pathlib.Path.cwd() / "Dockerfile", KNOWN_NAMES)
        result = fix_text(
            source.text,
            "<stdin>",
            _selection(run.choice, config),
            Settings(options=config.options),
        )
    except DfixError as error:
        run.reporter.error(str(error))
        if run.mode != "check" and not explicit_diff:
            sys.stdout.buffer.write(raw)
        return EXIT_ERROR
    prefix = files.BOM if source.bom else ""
    if explicit_diff:
        diff = unified_diff(prefix + result.original, prefix + result.fixed, "-")
        run.reporter.file_done(result, "<stdin>", diff)
        return EXIT_FIXES if result.changed else EXIT_CLEAN
    if run.mode == "check":
        run.reporter.file_done(result, "<stdin>", "")
        return EXIT_FIXES if result.changed else EXIT_CLEAN
    run.reporter.mode = "write"
    run.reporter.file_done(result, "<stdin>", "")
    sys.stdout.buffer.write(files.encode_source(source, result.fixed))
    return EXIT_CLEAN


def _fix_paths(paths: list[str], run: Run) -> None:
    targets = list(_targets(paths, run))
    choice = run.choice
    with run.reporter.progress(len(targets)) as advance:
        for target, outcome in zip(targets, _analyse_all(targets, choice), strict=True):
            _finish_target(target, outcome, run)
            if advance is not None:
                advance()


def _analyse_all(targets: list[files.Target], choice: Selection) -> Iterator[Outcome]:
    """Analyse files in order, on every core when there are many of them.

    Analysis is pure; writing and reporting stay in this process, in order.
    """
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    if len(targets) < PARALLEL_THRESHOLD or workers < 2:
        yield from (_analyse(target, choice) for target in targets)
        return
    # NOTE: BuildKit's parser is a Go library whose runtime threads do not
    # survive fork(); workers must start fresh.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield from pool.map(
            _analyse, targets, [choice] * len(targets), chunksize=CHUNK_SIZE
        )


def _analyse(target: files.Target, choice: Selection) -> Outcome:
    display = str(target.path)
    try:
        source = files.read_source(target.path)
        config = config_for(target.path, KNOWN_NAMES)
        result = fix_text(
            source.text,
            display,
            _selection(choice, config),
            Settings(options=config.options),
        )
    except (InputError, ParseError) as error:
        return Outcome(error=_with_path(str(error), display))
    except DfixError as error:
        return Outcome(error=str(error))
    return Outcome(source=source, result=result)


def _targets(paths: list[str], run: Run) -> list[files.Target]:
    found: list[files.Target] = []
    for name in paths:
        path = pathlib.Path(name)
        if path.is_dir():
            in_folder = []
            for target in files.find_targets(path):
                if _excluded(target.path, run):
                    continue
                if files.leaves_tree(target):
                    # Never followed, in any mode, so diffs match --write.
                    run.reporter.file_error(
                        str(target.path),
                        f"{target.path}: is a symlink to a file outside {name}; "
                        "left alone",
                    )
                    run.failed = True
                    continue
                in_folder.append(target)
            if not in_folder:
                run.reporter.error(f"{name}: no Dockerfiles found in this folder")
                run.failed = True
            found.extend(in_folder)
        elif path.exists() or path.is_symlink():
            # A file named on the command line is processed whatever its name.
            found.append(files.Target(path, path.parent))
        else:
            run.reporter.error(f"{name}: no such file or directory")
            run.failed = True
    return found


def _excluded(path: pathlib.Path, run: Run) -> bool:
    """Tell whether configuration excludes ``path``; a bad config excludes it.

    The error for a bad configuration file is reported when the file is
    processed, so it is not reported here.
    """
    try:
        return config_for(path, KNOWN_NAMES).excludes(path)
    except DfixError:
        return False


def _finish_target(target: files.Target, outcome: Outcome, run: Run) -> None:
    display = str(target.path)
    if outcome.error is not None:
        run.reporter.file_error(display, outcome.error)
        run.failed = True
        return
    source, result = outcome.source, outcome.result
    assert source is not None and result is not None
    prefix = files.BOM if source.bom else ""
    diff = unified_diff(prefix + result.original, prefix + result.fixed, display)
    if result.bugs:
        run.failed = True
    if result.changed:
        run.pending = True
        if run.mode == "write":
            try:
                files.write_atomically(target, source, result.fixed)
            except DfixError as error:
                run.reporter.file_error(display, str(error))
                run.failed = True
                return
            run.changes.append(_change(target, source, result))
        elif run.mode == "pr":
            run.changes.append(_change(target, source, result))
            run.deferred.append((target, source, result))
    run.reporter.file_done(result, display, diff)


def _change(
    target: files.Target, source: files.SourceText, result: FileResult
) -> FileChange:
    return FileChange(
        path=target.path.resolve(),
        original=source.raw,
        fixed=files.encode_source(source, result.fixed),
        fixes=tuple(result.fixes),
    )


def _with_path(message: str, display: str) -> str:
    return message if message.startswith(display) else f"{display}: {message}"


def _write_then_commit(run: Run, branch: str) -> None:
    from fixer import gitops

    try:
        gitops.check_clean([target.path for target, _, _ in run.deferred])
    except DfixError as error:
        run.reporter.error(str(error))
        run.failed = True
        return
    for target, source, result in run.deferred:
        try:
            files.write_atomically(target, source, result.fixed)
        except DfixError as error:
            run.reporter.file_error(str(target.path), str(error))
            run.failed = True
            return
    _commit(run, branch)


def _commit(run: Run, branch: str) -> None:
    from fixer import gitops

    try:
        result = gitops.commit_changes(run.changes, branch=branch)
    except DfixError as error:
        run.reporter.error(str(error))
        run.failed = True
        return
    if result.sha is None:
        run.reporter.info(f"branch {result.branch} already holds these fixes")
    else:
        count = len(result.files)
        run.reporter.info(
            f"committed {count} file{'s' if count != 1 else ''} on {result.branch} "
            f"({result.sha[:12]})"
        )


def _exit_code(run: Run) -> int:
    if run.failed:
        return EXIT_ERROR
    if run.pending and run.mode in ("check", "diff"):
        return EXIT_FIXES
    return EXIT_CLEAN


def _usage(message: str) -> None:
    sys.stderr.write(f"dfix: error: {message}\n")
    raise typer.Exit(EXIT_ERROR)


def _set_up_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="dfix: %(levelname)s: %(name)s: %(message)s",
        stream=sys.stderr,
    )
