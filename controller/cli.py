"""The ``relctl`` command line: thin click commands over the library.

Commands parse options, call one library function, and format what it returns (text, json,
github, markdown). Exit codes: 0 success, 1 the checked thing is invalid / did not converge,
2 usage or internal error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from controller import __version__
from controller.access import render_codeowners
from controller.check import check_change
from controller.daemon import Controller, DaemonOptions, run_forever, utc_now
from controller.gitops import GitError, Workspace
from controller.manifests import (
    CONFIG_FILE,
    LoadResult,
    Problem,
    Severity,
    load_access,
    load_repository,
)
from controller.model import ConditionType, Outcome
from controller.platform import open_platform
from controller.platform.cli import platform
from controller.platform.errors import PlatformError, PlatformUnusable
from controller.platform.protocol import Platform
from controller.preview import preview_change, preview_json, render_markdown
from controller.preview import render_text as render_preview_text
from controller.reconcile import PassResult, ReleaseResult, plan_repository
from controller.status import format_status_table, read_statuses, status_rows

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relctl")
def cli() -> None:
    """relctl: declarative, reviewable releases of mini programs to partner super apps."""


cli.add_command(platform)


# ---------------------------------------------------------------------------------------------
# relctl validate
# ---------------------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "paths", nargs=-1, type=click.Path(exists=True, path_type=Path), metavar="[PATH]..."
)
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Release repository root (default: the nearest directory up from here with relctl.yaml).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text for people, json (docs/validate.md) for tools, github for workflow annotations.",
)
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
def validate(paths: tuple[Path, ...], repo: Path | None, output: str, strict: bool) -> None:
    """Check manifests, relctl.yaml and access.yaml; report every problem with its location.

    With no PATH, checks the whole repository. Exit 0 valid, 1 invalid, 2 usage or internal
    error.
    """
    root = (repo or _find_repo(Path.cwd())).resolve()
    selected: list[Path] = []
    for path in paths:
        full = path.resolve()
        if not full.is_relative_to(root):
            raise click.UsageError(f"{path} is outside the repository {root}")
        selected.append(full)
    try:
        result = load_repository(root, selected or None)
    except Exception as exc:  # a bug in relctl: one line, no traceback
        click.echo(f"relctl: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(2)
    failed = not result.ok or (strict and bool(result.problems))
    _report(result.problems, output, _summary(result))
    sys.exit(1 if failed else 0)


def _report(problems: Iterable[Problem], output: str, summary: str) -> None:
    """Print located problems as ``validate`` and ``check`` do: text (with hints), the
    stable json list (docs/validate.md), or GitHub workflow annotations."""
    if output == "json":
        click.echo(json.dumps([p.to_dict() for p in problems], indent=2))
        return
    for problem in problems:
        if output == "github":
            click.echo(_github_annotation(problem))
        else:
            click.echo(_text_line(problem))
            if problem.hint:
                click.echo(f"  hint: {problem.hint}")
    click.echo(summary)


def _find_repo(start: Path) -> Path:
    """The nearest directory from ``start`` upward holding relctl.yaml (else ``start``)."""
    for directory in (start, *start.parents):
        if (directory / CONFIG_FILE).is_file():
            return directory
    return start


def _text_line(problem: Problem) -> str:
    field = f"{problem.path}: " if problem.path else ""
    return (
        f"{problem.file}:{problem.line}:{problem.column}: {problem.severity}: "
        f"{field}{problem.message} [{problem.code}]"
    )


def _summary(result: LoadResult) -> str:
    errors, warnings = len(result.errors), len(result.warnings)
    files = f"{len(result.files)} file{'s' if len(result.files) != 1 else ''}"
    if not errors and not warnings:
        return f"{files} valid"
    counts = [f"{errors} error{'s' if errors != 1 else ''}"]
    if warnings:
        counts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return f"{', '.join(counts)} in {files}"


def _github_annotation(problem: Problem) -> str:
    """A GitHub Actions workflow command (``::error file=...,line=...::message``)."""
    level = "error" if problem.severity is Severity.ERROR else "warning"
    title = f"{problem.path} ({problem.code})" if problem.path else problem.code
    message = problem.message + (f"\nhint: {problem.hint}" if problem.hint else "")
    return (
        f"::{level} file={_gh_property(problem.file)},line={problem.line},"
        f"col={problem.column},title={_gh_property(title)}::{_gh_data(message)}"
    )


def _gh_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(value: str) -> str:
    return _gh_data(value).replace(":", "%3A").replace(",", "%2C")


# ---------------------------------------------------------------------------------------------
# the controller: reconcile, run, plan, status
# ---------------------------------------------------------------------------------------------

DEFAULT_PLATFORM = "sim:.relctl/platform.db"


def _platform_option(func: F) -> F:
    return click.option(
        "--platform",
        "platform_spec",
        envvar="RELCTL_PLATFORM",
        default=None,
        help=f"Platform adapter, e.g. sim:PATH for the embedded simulator "
        f"(env RELCTL_PLATFORM; default: relctl.yaml's platform, else {DEFAULT_PLATFORM}).",
    )(func)


def _controller_options(func: F) -> F:
    """Options shared by ``reconcile`` and ``run`` (each also read from RELCTL_*)."""
    options = [
        click.option(
            "--remote",
            envvar="RELCTL_REMOTE",
            required=True,
            help="Git remote of the release repository: path, file://, https:// or ssh "
            "(env RELCTL_REMOTE).",
        ),
        click.option(
            "--branch",
            envvar="RELCTL_BRANCH",
            default="main",
            show_default=True,
            help="Branch whose manifests are the desired state (env RELCTL_BRANCH).",
        ),
        click.option(
            "--workdir",
            envvar="RELCTL_WORKDIR",
            default=".relctl/work",
            show_default=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="The controller's own clone; locked, one controller per workdir "
            "(env RELCTL_WORKDIR).",
        ),
        _platform_option,
        click.option(
            "--author-name",
            envvar="RELCTL_AUTHOR_NAME",
            default="relctl",
            show_default=True,
            help="Author name of status commits (env RELCTL_AUTHOR_NAME).",
        ),
        click.option(
            "--author-email",
            envvar="RELCTL_AUTHOR_EMAIL",
            default="relctl@localhost",
            show_default=True,
            help="Author e-mail of status commits (env RELCTL_AUTHOR_EMAIL).",
        ),
        click.option(
            "--skip-ci/--no-skip-ci",
            envvar="RELCTL_SKIP_CI",
            default=False,
            show_default=True,
            help="Put [skip ci] in status commit subjects so CI ignores them.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"relctl: {message}", err=True)
    sys.exit(code)


@contextmanager
def _opened_platform(spec: str | None, root: Path | None = None) -> Iterator[Platform]:
    """Open the adapter named by ``spec``, else relctl.yaml's, else the default simulator."""
    if spec is None and root is not None:
        config = load_repository(root, [root / CONFIG_FILE]).config
        spec = config.platform if config is not None else None
    try:
        adapter = open_platform(spec or DEFAULT_PLATFORM)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    except PlatformUnusable as exc:  # e.g. a sim: path with no simulator database
        _fail(str(exc))
    try:
        yield adapter
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()


def _progress_printer(output: str) -> Callable[[ReleaseResult], None]:
    """Per-release progress for long passes (every 500 releases, on stderr)."""
    count = 0

    def progress(_result: ReleaseResult) -> None:
        nonlocal count
        count += 1
        if output == "text" and count % 500 == 0:
            click.echo(f"  ... {count} releases reconciled", err=True)

    return progress


def _pass_lines(result: PassResult, number: int | None = None) -> list[str]:
    """What a person wants to see of one pass: transitions, actions, problems, the commit."""
    lines: list[str] = []
    head = f"pass {number} " if number is not None else ""
    for item in result.releases:
        acted = item.result is not None
        if not (item.changed or acted):
            continue
        what = item.transition or str(item.status.phase)
        step = ""
        if item.result is not None:
            step = f": {item.result.step.describe()}"
            if item.result.error is not None:
                step += f" failed ({item.result.error.code}: {item.result.error})"
        reason = ""
        if not step:
            # Invalid and Forbidden have no plan: their condition says why.
            ready = item.status.condition(ConditionType.READY)
            reason = item.plan.message if item.plan else ready.message if ready else ""
        tail = f" ({reason})" if reason else ""
        lines.append(f"{head}{item.key} {item.status.version} {what}{step}{tail}")
    for key in result.removed:
        lines.append(f"{head}{key}: manifest removed, status deleted")
    if result.pushed is not None:
        lines.append(
            f"{head}pushed {result.pushed.commit[:7]} ({len(result.pushed.files)} status "
            f"file(s), {result.pushed.attempts} attempt(s)) on top of {result.commit[:7]}"
        )
    return lines


def _pass_json(result: PassResult) -> dict[str, Any]:
    return {
        "commit": result.commit,
        "pushed": result.pushed.commit if result.pushed else None,
        "releases": [
            {
                "release": item.key,
                "version": item.status.version,
                "phase": str(item.status.phase),
                "grayscale": item.status.grayscale,
                "transition": item.transition,
                "reason": str(item.plan.reason) if item.plan else "Invalid",
                "message": item.plan.message if item.plan else None,
                "action": item.result.step.describe() if item.result else None,
                "error": item.result.error.code if item.result and item.result.error else None,
                "changed": item.changed,
            }
            for item in result.releases
        ],
        "problems": [p.to_dict() for p in result.problems],
    }


def _workspace(
    remote: str, branch: str, workdir: Path, author_name: str, author_email: str
) -> Workspace:
    return Workspace(remote, branch, workdir, author_name=author_name, author_email=author_email)


@cli.command()
@_controller_options
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for tools.",
)
def reconcile(
    remote: str,
    branch: str,
    workdir: Path,
    platform_spec: str | None,
    author_name: str,
    author_email: str,
    skip_ci: bool,
    output: str,
) -> None:
    """Run one reconcile pass: fetch, validate, observe, act, write status, push.

    Exit 0 when the pass ran and every release is valid and healthy, 1 when it ran but some
    release is invalid, stalled or failing, 2 when it could not run (git, lock, usage).
    """
    try:
        with (
            _workspace(remote, branch, workdir, author_name, author_email) as workspace,
            _opened_platform(platform_spec) as adapter,
        ):
            controller = Controller(
                workspace, adapter, progress=_progress_printer(output), skip_ci=skip_ci
            )
            result = controller.pass_once(raise_errors=True)
    except (GitError, PlatformError) as exc:
        _fail(str(exc))
        return
    assert result is not None
    if output == "json":
        click.echo(json.dumps(_pass_json(result), indent=2))
    else:
        for line in _pass_lines(result):
            click.echo(line)
        if result.pushed is None:
            click.echo(f"nothing changed at {result.commit[:7]}; no commit")
    unhealthy = [
        r for r in result.releases
        if r.status.errors or (r.result is not None and r.result.error is not None)
        or (r.plan is not None and r.plan.outcome is Outcome.STALLED)
    ]  # fmt: skip
    sys.exit(1 if unhealthy or not _only_warnings(result) else 0)


def _only_warnings(result: PassResult) -> bool:
    return all(p.severity is Severity.WARNING for p in result.problems)


@cli.command()
@_controller_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    envvar="RELCTL_INTERVAL",
    help="Seconds between passes (env RELCTL_INTERVAL).",
)
@click.option(
    "--jitter",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Random extra delay per pass, in seconds.",
)
@click.option("--once", is_flag=True, help="Run a single pass, then exit.")
@click.option("-v", "--verbose", is_flag=True, help="Log every pass, also when nothing changed.")
def run(
    remote: str,
    branch: str,
    workdir: Path,
    platform_spec: str | None,
    author_name: str,
    author_email: str,
    skip_ci: bool,
    interval: float,
    jitter: float,
    once: bool,
    verbose: bool,
) -> None:
    """Run the controller: a reconcile pass every --interval seconds until SIGTERM/SIGINT.

    One pass at a time; on SIGTERM or SIGINT the pass in progress finishes (its status commit
    lands) and the process exits 0. Prints one line per release that moved.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    def report(result: PassResult) -> None:
        for line in _pass_lines(result, controller.passes):
            click.echo(line)
        if verbose and result.pushed is None:
            click.echo(f"pass {controller.passes}: nothing changed at {result.commit[:7]}")

    try:
        with (
            _workspace(remote, branch, workdir, author_name, author_email) as workspace,
            _opened_platform(platform_spec) as adapter,
        ):
            controller = Controller(
                workspace,
                adapter,
                progress=_progress_printer("text"),
                on_pass=report,
                skip_ci=skip_ci,
            )
            click.echo(
                f"relctl controller: {remote} ({branch}) every {interval:g}s; "
                "Ctrl-C or SIGTERM stops after the current pass"
            )
            code = run_forever(
                controller,
                DaemonOptions(interval=interval, jitter=jitter, max_passes=1 if once else None),
            )
    except GitError as exc:
        _fail(str(exc))
        return
    click.echo(f"relctl controller: stopped after {controller.passes} pass(es)")
    sys.exit(code)


@cli.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Release repository root (default: the nearest directory up with relctl.yaml).",
)
@_platform_option
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for tools, markdown for a pull-request comment.",
)
@click.option(
    "--base",
    help="Preview a change instead: what merging HEAD into this revision (e.g. origin/main) "
    "will make the controller do, from the status files at the base. No platform access.",
)
@click.option(
    "--head", default="HEAD", show_default=True, help="The change's revision (with --base)."
)
def plan(
    repo: Path | None, platform_spec: str | None, output: str, base: str | None, head: str
) -> None:
    """Show what the next pass would do, per release, without acting or writing to git.

    Without --base: reads the manifests and status files of the repository and the platform's
    current state (read-only calls). With --base: previews a pull request, per release: the
    transition, the steps and gates, tester differences, and anything that will be refused
    (--format markdown is one pull-request comment, updated in place by its marker).
    """
    root = (repo or _find_repo(Path.cwd())).resolve()
    if base is not None:
        try:
            change = preview_change(root, base, head, utc_now())
        except GitError as exc:
            _fail(str(exc))
            return
        if output == "json":
            click.echo(json.dumps(preview_json(change), indent=2))
        elif output == "markdown":
            click.echo(render_markdown(change), nl=False)
        else:
            click.echo(render_preview_text(change))
        sys.exit(0)
    try:
        with _opened_platform(platform_spec, root) as adapter:
            results = plan_repository(root, adapter, "", utc_now())
    except PlatformError as exc:
        _fail(f"cannot read the platform: {exc}")
        return
    if output == "json":
        click.echo(json.dumps([_plan_json(r) for r in results], indent=2))
    elif output == "markdown":
        click.echo(_plan_markdown(results))
    else:
        for r in results:
            click.echo(_plan_text(r))
    sys.exit(0)


def _plan_json(r: ReleaseResult) -> dict[str, Any]:
    step = r.plan.step if r.plan else None
    return {
        "release": r.key,
        "version": r.status.version,
        "phase": str(r.status.phase),
        "outcome": str(r.plan.outcome) if r.plan else "Stalled",
        "reason": str(r.plan.reason) if r.plan else "Invalid",
        "message": r.plan.message if r.plan else _invalid_message(r),
        "action": step.describe() if step else None,
    }


def _invalid_message(r: ReleaseResult) -> str:
    return "; ".join(f"{e.file}:{e.line}:{e.column}: {e.message}" for e in r.status.errors)


def _plan_text(r: ReleaseResult) -> str:
    data = _plan_json(r)
    action = f" -> {data['action']}" if data["action"] else ""
    return (
        f"{r.key} {data['version']} [{data['phase']}]{action}: {data['reason']}: {data['message']}"
    )


def _plan_markdown(results: list[ReleaseResult]) -> str:
    lines = [
        "### relctl plan",
        "",
        "| release | version | phase | next action | why |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        data = _plan_json(r)
        message = str(data["message"]).replace("|", "\\|")
        lines.append(
            f"| {r.key} | {data['version']} | {data['phase']} | "
            f"{data['action'] or '-'} | {data['reason']}: {message} |"
        )
    return "\n".join(lines)


@cli.command()
@click.option(
    "--base",
    required=True,
    help="The revision the pull request goes into, e.g. origin/main: the change is judged "
    "against it and against the status files there.",
)
@click.option("--head", default="HEAD", show_default=True, help="The change's revision.")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Release repository root (default: the nearest directory up from here with relctl.yaml).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text for people, json (as validate's) for tools, github for workflow annotations.",
)
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
def check(base: str, head: str, repo: Path | None, output: str, strict: bool) -> None:
    """Check a pull request: validate HEAD, then judge the change from --base to it.

    Refuses what the platform or the controller would refuse or ignore (a lower version or
    grayscale, a frozen configuration, an uncancel, a missing supersede), edits of status/
    and commits their authors had no right to make. Exit 0 allowed, 1 refused, 2 usage, git
    or internal error.
    """
    root = (repo or _find_repo(Path.cwd())).resolve()
    try:
        result = check_change(root, base, head)
    except GitError as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # a bug in relctl: one line, no traceback
        _fail(f"internal error: {type(exc).__name__}: {exc}")
        return
    failed = not result.ok or (strict and bool(result.problems))
    errors, warnings = len(result.errors), len(result.warnings)
    change = f"{result.files} file{'s' if result.files != 1 else ''} and the change "
    change += f"{result.base[:7]}..{result.head[:7]}"
    counts = [f"{errors} error{'s' if errors != 1 else ''}"]
    if warnings:
        counts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    summary = f"{', '.join(counts)} in {change}" if result.problems else f"{change}: allowed"
    _report(result.problems, output, summary)
    sys.exit(1 if failed else 0)


@cli.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Read status files from this checkout (default: the nearest with relctl.yaml).",
)
@click.option(
    "--remote", help="Read status files from this git remote instead (cloned to a temp dir)."
)
@click.option("--branch", default="main", show_default=True, help="Branch of --remote.")
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text table for people, json for tools.",
)
def status(repo: Path | None, remote: str | None, branch: str, output: str) -> None:
    """Show every release: mini program, app, version, phase, grayscale, since, reason."""
    if repo is not None and remote is not None:
        raise click.UsageError("give --repo or --remote, not both")
    if remote is not None:
        with tempfile.TemporaryDirectory(prefix="relctl-status-") as temp:
            try:
                with Workspace(remote, branch, Path(temp)) as workspace:
                    workspace.sync()
                    statuses = read_statuses(workspace.root)
            except GitError as exc:
                _fail(str(exc))
                return
    else:
        statuses = read_statuses((repo or _find_repo(Path.cwd())).resolve())
    rows = status_rows(statuses, datetime.now(UTC))
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("no status files yet: has the controller run a pass?")
    else:
        click.echo(format_status_table(rows, width=shutil.get_terminal_size((120, 24)).columns))


@cli.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Release repository root (default: the nearest directory up with relctl.yaml).",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    help="Where to write the file, e.g. .github/CODEOWNERS; - prints it.",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Write nothing; exit 1 when --output is missing or differs (for CI).",
)
def codeowners(repo: Path | None, output: str, check_only: bool) -> None:
    """Write a CODEOWNERS file from access.yaml.

    Each mini program's folder under releases/ is owned by its owners and the masters;
    access.yaml, relctl.yaml and status/ by the masters. GitHub and GitLab then request
    those reviewers on every pull request, per mini program.
    """
    root = (repo or _find_repo(Path.cwd())).resolve()
    access, problems = load_access(root)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if access is None:
        for problem in errors:
            click.echo(_text_line(problem), err=True)
        _fail("access.yaml is missing" if not errors else "access.yaml is invalid", 1)
        return
    releases = root / "releases"
    mini_programs = (
        sorted(p.name for p in releases.iterdir() if p.is_dir()) if releases.is_dir() else []
    )
    text = render_codeowners(access, mini_programs)
    if output == "-" and not check_only:
        click.echo(text, nl=False)
        return
    target = Path(output) if Path(output).is_absolute() else Path.cwd() / output
    if check_only:
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != text:
            _fail(
                f"{output} is not up to date with access.yaml: run relctl codeowners -o {output}", 1
            )
        click.echo(f"{output} is up to date")
        return
    temp = target.with_name(f".{target.name}.relctl-tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(text, encoding="utf-8")
        temp.replace(target)  # atomic: never a half-written CODEOWNERS
    except OSError as exc:
        with suppress(OSError):
            temp.unlink()
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"wrote {output}: {len(mini_programs)} mini program(s)")


def main() -> None:
    """Console-script entry point."""
    cli()
