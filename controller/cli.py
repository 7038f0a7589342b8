"""The ``relctl`` command line: thin click commands over the library.

Commands parse options, call one library function, print what ``controller.output`` makes
of its result (text, json, github, markdown), and pick the exit code: 0 success, 1 the
checked thing is invalid / did not converge, 2 usage or internal error (one line on stderr,
never a traceback).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from controller import __version__
from controller.access import Ledger, TrustError, render_codeowners
from controller.check import check_change
from controller.commands import Command, CommandError, run_command
from controller.gitops import GitError, Workspace, redact
from controller.logs import setup_logging
from controller.manifests import (
    CONFIG_FILE,
    RELEASES_DIR,
    Severity,
    load_access,
    load_repository,
)
from controller.model import Status
from controller.output.report import (
    plan_report,
    preview_report,
    problems_report,
    reconcile_report,
    rollout_report,
    run_report,
    status_report,
    trust_report,
)
from controller.output.table import status_rows
from controller.output.text import (
    check_summary,
    problem_line,
    progress_line,
    schedule_text,
    validate_summary,
)
from controller.platform import open_platform
from controller.platform.errors import PlatformError, PlatformUnusable
from controller.platform.protocol import Platform
from controller.state import STATE_FILE, ControllerState, StateError
from controller.status import read_statuses
from controller.trust import TrustSettings, reset_trust, saved_trust

if TYPE_CHECKING:
    from controller.reconcile import PassResult, ReleaseResult

# The commands that run the controller, serve or preview import what they need when they run:
# `relctl validate` (the pre-commit hook) and `relctl check` start without loading the daemon,
# the servers, notifications or the simulator's console.

F = TypeVar("F", bound=Callable[..., Any])


class _LazyGroup(click.Group):
    """A command group whose heavier subcommands are imported only when they are used
    (``lazy``: name -> ``module:attribute``); listing them (``--help``) imports them too."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=_LazyGroup,
    lazy={"platform": "controller.cli_platform:platform"},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="relctl")
def cli() -> None:
    """relctl: declarative, reviewable releases of mini programs to partner super apps."""


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
    click.echo(problems_report(result.problems, output, validate_summary(result)), nl=False)
    sys.exit(1 if failed else 0)


def _find_repo(start: Path) -> Path:
    """The nearest directory from ``start`` upward holding relctl.yaml (else ``start``)."""
    for directory in (start, *start.parents):
        if (directory / CONFIG_FILE).is_file():
            return directory
    return start


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


def _workspace_options(func: F) -> F:
    """Where the controller's clone is, and who its status commits are by (RELCTL_* too)."""
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
            help="The controller's own clone and memory; locked, one controller per workdir "
            "(env RELCTL_WORKDIR).",
        ),
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
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _controller_options(func: F) -> F:
    """Options shared by ``reconcile`` and ``run``: the workspace's, the platform, where
    trust starts, and [skip ci] (each also read from RELCTL_*)."""
    options = [
        _workspace_options,
        _platform_option,
        click.option(
            "--trust-anchor",
            envvar="RELCTL_TRUST_ANCHOR",
            default=None,
            metavar="COMMIT",
            help="On the first start: the commit of main trust starts at; its access.yaml is "
            "trusted as it is (env RELCTL_TRUST_ANCHOR). See docs/security.md.",
        ),
        click.option(
            "--trust-on-first-use",
            envvar="RELCTL_TRUST_ON_FIRST_USE",
            is_flag=True,
            default=False,
            help="On the first start, trust main as it is (logged; prefer --trust-anchor) "
            "(env RELCTL_TRUST_ON_FIRST_USE).",
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


def _progress_printer(output: str) -> Callable[[ReleaseResult, int, int], None]:
    """Per-release progress of long passes in text output, on stderr (counted per pass)."""

    def progress(_result: ReleaseResult, done: int, total: int) -> None:
        line = progress_line(done, total) if output == "text" else None
        if line is not None:
            click.echo(line, err=True)

    return progress


def _daemon_board(workspace: Workspace, branch: str) -> Any:
    """The release board over the branch as the controller last fetched or pushed it (its
    clone's remote-tracking ref): served by ``relctl run --listen`` at ``/``."""
    from controller.board import board_app, repository_source

    return board_app(repository_source(workspace.root, f"refs/remotes/origin/{branch}"))


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
    trust_anchor: str | None,
    trust_on_first_use: bool,
    skip_ci: bool,
    output: str,
) -> None:
    """Run one reconcile pass: fetch, validate, observe, act, write status, push.

    Exit 0 when the pass ran and every release is valid and healthy, 1 when it ran but some
    release is invalid, stalled or failing, 2 when it could not run (git, lock, usage).
    """
    from controller.daemon import Controller

    try:
        with (
            _workspace(remote, branch, workdir, author_name, author_email) as workspace,
            _opened_platform(platform_spec) as adapter,
        ):
            controller = Controller(
                workspace,
                adapter,
                progress=_progress_printer(output),
                skip_ci=skip_ci,
                trust=TrustSettings(trust_anchor, trust_on_first_use),
            )
            try:
                result = controller.pass_once(raise_errors=True)
            finally:
                controller.close()
    except (GitError, PlatformError, StateError, TrustError) as exc:
        _fail(str(exc))
        return
    assert result is not None
    click.echo(reconcile_report(result, output), nl=False)
    sys.exit(0 if result.healthy else 1)


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
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people; json for tools: one line per pass (JSON Lines), the rest on stderr.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="RELCTL_LOG_FORMAT",
    help="Log lines on stderr: text, or json (one object per line with release, version, "
    "phase, action, duration, commit; env RELCTL_LOG_FORMAT).",
)
@click.option(
    "--listen",
    envvar="RELCTL_LISTEN",
    default=None,
    metavar="HOST:PORT",
    help="Serve /healthz, /readyz, /metrics and POST /hooks/git (off by default; a bare PORT "
    "listens on 127.0.0.1; env RELCTL_LISTEN). The webhook secret is RELCTL_WEBHOOK_SECRET.",
)
@click.option(
    "--lease-duration",
    type=click.FloatRange(min=0),
    default=0.0,
    envvar="RELCTL_LEASE_DURATION",
    help="Run as one of several replicas: only the holder of refs/relctl/lease on the remote "
    "acts; it is renewed every pass and taken over after this many seconds without renewal "
    "(0: no lease, a single replica; at least twice --interval; env RELCTL_LEASE_DURATION).",
)
@click.option(
    "--replica-id",
    envvar="RELCTL_REPLICA_ID",
    default=None,
    help="This replica's name in the lease (default: host name and pid; env RELCTL_REPLICA_ID).",
)
def run(
    remote: str,
    branch: str,
    workdir: Path,
    platform_spec: str | None,
    author_name: str,
    author_email: str,
    trust_anchor: str | None,
    trust_on_first_use: bool,
    skip_ci: bool,
    interval: float,
    jitter: float,
    once: bool,
    verbose: bool,
    output: str,
    log_format: str,
    listen: str | None,
    lease_duration: float,
    replica_id: str | None,
) -> None:
    """Run the controller: a reconcile pass every --interval seconds until SIGTERM/SIGINT.

    One pass at a time; on SIGTERM or SIGINT the pass in progress finishes (its status commit
    lands) and the process exits 0. Prints one line per release that moved (--format json:
    one JSON object per pass that moved something, on its own line).
    """
    from controller.daemon import CollectorPacing, Controller, DaemonOptions, run_forever
    from controller.lease import Lease
    from controller.metrics import Metrics
    from controller.notify import Notifier, Outbox, configured_targets, notification_secrets
    from controller.server import WebhookSettings, parse_listen

    # In json, standard output carries nothing but the passes.
    to_stderr = output == "json"
    try:
        address = parse_listen(listen) if listen is not None else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if lease_duration and lease_duration < 2 * interval:
        # a standby checks the lease once an interval: it takes over within two lease periods
        raise click.UsageError("--lease-duration must be at least twice --interval")
    webhook_secret = os.environ.get("RELCTL_WEBHOOK_SECRET") or None
    setup_logging(
        log_format,
        level=logging.INFO if verbose or log_format == "json" else logging.WARNING,
        secrets=[webhook_secret or "", *notification_secrets(os.environ)],
    )
    metrics = Metrics()

    def report(result: PassResult) -> None:
        click.echo(run_report(result, controller.passes, output, verbose=verbose), nl=False)

    try:
        with (
            _workspace(remote, branch, workdir, author_name, author_email) as workspace,
            _opened_platform(platform_spec) as adapter,
        ):
            lease = None
            if lease_duration:
                holder = replica_id or f"{socket.gethostname()}-{os.getpid()}"
                lease = Lease(lambda: workspace.root, holder, lease_duration, metrics=metrics)
            controller = Controller(
                workspace,
                adapter,
                progress=_progress_printer(output),
                on_pass=report,
                skip_ci=skip_ci,
                trust=TrustSettings(trust_anchor, trust_on_first_use),
                metrics=metrics,
                lease=lease,
                notifier=None,
                collector=CollectorPacing(),
            )
            controller.notifier = Notifier(
                Outbox(workdir),
                lambda: configured_targets(controller.cache),
                metrics=metrics,
            )
            click.echo(
                f"relctl controller: {redact(remote)} ({branch}) every {interval:g}s; "
                "Ctrl-C or SIGTERM stops after the current pass",
                err=to_stderr,
            )
            code = run_forever(
                controller,
                DaemonOptions(interval=interval, jitter=jitter, max_passes=1 if once else None),
                listen=address,
                webhook=WebhookSettings(webhook_secret, branch),
                board=_daemon_board(workspace, branch) if address is not None else None,
            )
            controller.close()
    except OSError as exc:  # the --listen address is taken or not ours
        _fail(str(exc))
        return
    except (GitError, StateError, TrustError) as exc:
        _fail(str(exc))
        return
    click.echo(f"relctl controller: stopped after {controller.passes} pass(es)", err=to_stderr)
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
    from controller.preview import preview_change
    from controller.reconcile import plan_repository

    root = (repo or _find_repo(Path.cwd())).resolve()
    now = datetime.now(UTC).replace(microsecond=0)
    if base is not None:
        try:
            change = preview_change(root, base, head, now)
        except GitError as exc:
            _fail(str(exc))
            return
        click.echo(preview_report(change, output), nl=False)
        sys.exit(0)
    try:
        with _opened_platform(platform_spec, root) as adapter:
            results = plan_repository(root, adapter, "", now)
    except PlatformError as exc:
        _fail(f"cannot read the platform: {exc}")
        return
    click.echo(plan_report(results, output), nl=False)
    if output == "text":
        loaded = load_repository(root)
        apps = loaded.config.target_apps if loaded.config is not None else {}
        for release in loaded.releases:
            for line in schedule_text(release, apps.get(release.target_app)):
                click.echo(line)
    sys.exit(0)


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
    click.echo(problems_report(result.problems, output, check_summary(result)), nl=False)
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
@click.argument("mini_program", required=False)
@click.argument("target_app", required=False)
def status(
    repo: Path | None,
    remote: str | None,
    branch: str,
    output: str,
    mini_program: str | None,
    target_app: str | None,
) -> None:
    """Show every release: mini program, app, version, phase, grayscale, since, reason.

    With MINI_PROGRAM TARGET_APP: that release's rollout, its steps with the current one
    marked, the halt, the next action and the analysis runs."""
    if repo is not None and remote is not None:
        raise click.UsageError("give --repo or --remote, not both")
    if (mini_program is None) != (target_app is None):
        raise click.UsageError("give both MINI_PROGRAM and TARGET_APP, or neither")
    if remote is not None:
        with tempfile.TemporaryDirectory(prefix="relctl-status-") as temp:
            try:
                with Workspace(remote, branch, Path(temp)) as workspace:
                    workspace.sync()
                    workspace.checkout()  # the clone holds no files otherwise
                    statuses = read_statuses(workspace.root)
                    if mini_program is not None and target_app is not None:
                        _release_detail(workspace.root, statuses, mini_program, target_app, output)
                        return
            except GitError as exc:
                _fail(str(exc))
                return
    else:
        root = (repo or _find_repo(Path.cwd())).resolve()
        statuses = read_statuses(root)
        if mini_program is not None and target_app is not None:
            _release_detail(root, statuses, mini_program, target_app, output)
            return
    rows = status_rows(statuses, datetime.now(UTC))
    width = shutil.get_terminal_size((120, 24)).columns
    click.echo(status_report(rows, output, width), nl=False)


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
            click.echo(problem_line(problem), err=True)
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


@cli.group()
def trust() -> None:
    """Where the controller's trust in main starts, and re-anchoring it (docs/security.md).

    The controller acts only on changes of main that access.yaml allowed, judged commit by
    commit from a trust anchor along main's first parents. When main stops continuing the
    history it judged (a force push, a rollback), nothing is acted on until an operator
    re-anchors with `relctl trust reset`.
    """


def _trust_summary(state: ControllerState) -> dict[str, object]:
    current, origin = saved_trust(state)
    if current is None:
        return {"anchor": None, "commit": None, "how": None, "authorized": 0, "refusals": {}}
    return {
        "anchor": current.anchor,
        "commit": current.commit,
        "how": origin.get("how"),
        "authorized": len(current.authorized),
        "refusals": {path: d.message for path, d in current.refusals.items()},
    }


@trust.command("show")
@click.option(
    "--workdir",
    envvar="RELCTL_WORKDIR",
    default=".relctl/work",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The controller's workdir (env RELCTL_WORKDIR).",
)
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text for people, json for tools.",
)  # fmt: skip
def trust_show(workdir: Path, output: str) -> None:
    """Show the trust anchor, the last commit of main judged, and refusals in effect."""
    if not (workdir / STATE_FILE).is_file():
        _fail(f"{workdir} holds no controller state (has the controller run there?)")
    try:
        with ControllerState(workdir) as state:
            summary = _trust_summary(state)
    except (StateError, TrustError) as exc:
        _fail(str(exc))
        return
    click.echo(trust_report(summary, output), nl=False)


@trust.command("reset")
@_workspace_options
@click.option(
    "--anchor",
    required=True,
    metavar="COMMIT",
    help="The commit of the remote branch to trust from now on (e.g. the new tip, after you "
    "reviewed what changed).",
)
def trust_reset(
    remote: str,
    branch: str,
    workdir: Path,
    author_name: str,
    author_email: str,
    anchor: str,
) -> None:
    """Re-anchor trust at COMMIT: the operator's acknowledgement after main diverged.

    Takes the workdir's lock (stop the controller first), fetches the branch, and trusts
    everything in COMMIT's tree as it is; the controller then follows main from there.
    """
    try:
        with (
            _workspace(remote, branch, workdir, author_name, author_email) as workspace,
            ControllerState(workspace.workdir) as state,
        ):
            workspace.sync()
            old, new = reset_trust(Ledger(workspace.root), state, anchor)
            summary = _trust_summary(state)
    except (GitError, StateError, TrustError) as exc:
        _fail(str(exc))
        return
    before = old.anchor[:12] if old is not None else "nothing"
    click.echo(f"trust re-anchored at {new.anchor[:12]} (was {before})")
    click.echo(trust_report(summary, "text"), nl=False)


# ---------------------------------------------------------------------------------------------
# the release board
# ---------------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A release repository: a clone, a bare remote, or a plain directory "
    "(default: the nearest with relctl.yaml).",
)
@click.option(
    "--rev",
    default="HEAD",
    show_default=True,
    help="The revision to show (re-read on every request); --work-tree reads the files instead.",
)
@click.option(
    "--work-tree", is_flag=True, help="Show the files on disk as they are (no commits listed)."
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="HOST:PORT to serve on (port 0 picks a free one). Loopback by default.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the board as static files here (GitHub/GitLab Pages) instead of serving it.",
)
def board(repo: Path | None, rev: str, work_tree: bool, listen: str, out: Path | None) -> None:
    """The release board: every release's progress, steps, history and QR code."""
    from controller.board import board_app, export_board, repository_source
    from controller.board.serve import BoardServer, bind, is_loopback, parse_listen

    root = (repo or _find_repo(Path.cwd())).resolve()
    source = repository_source(root, None if work_tree else rev)
    if out is not None:
        try:
            written = export_board(source(), out, datetime.now(UTC))
        except (GitError, OSError) as exc:
            _fail(f"cannot export the board: {exc}")
            return
        click.echo(f"wrote {len(written)} files to {out}")
        return
    try:
        host, port = parse_listen(listen)
        sock = bind(host, port)
    except (ValueError, OSError) as exc:
        _fail(f"cannot listen on {listen}: {exc}")
        return
    if not is_loopback(host):
        click.echo(f"relctl board: listening on {host}, beyond this machine", err=True)
    server = BoardServer(board_app(source), sock)
    click.echo(f"relctl board: {server.url} (Ctrl-C to stop)")
    server.run()


def _release_detail(
    root: Path, statuses: list[Status], mini_program: str, target_app: str, output: str
) -> None:
    key = f"{mini_program}/{target_app}"
    loaded = load_repository(root, [f"{RELEASES_DIR}/{key}.yaml"])
    release = next((r for r in loaded.releases if r.key == key), None)
    if release is None:
        _fail(f"{RELEASES_DIR}/{key}.yaml is missing or invalid (relctl validate says why)")
        return
    found = next((s for s in statuses if s.key == key), None)
    click.echo(rollout_report(release, found, output), nl=False)


# ---------------------------------------------------------------------------------------------
# rollout commands: each one a commit to the manifest
# ---------------------------------------------------------------------------------------------


def _rollout_command(name: str, command: Command, help_text: str) -> None:
    @cli.command(name=name, help=help_text)
    @click.argument("mini_program")
    @click.argument("target_app")
    @click.option(
        "--repo",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="The clone to commit in (default: the current directory).",
    )
    @click.option("--message", "-m", help="Why: the body of the commit message.")
    @click.option("--full", is_flag=True, hidden=name != "promote", help="Skip to 100%.")
    def run_it(
        mini_program: str, target_app: str, repo: Path | None, message: str | None, full: bool
    ) -> None:
        chosen = Command.PROMOTE_FULL if full and command is Command.PROMOTE else command
        try:
            done = run_command(
                (repo or Path.cwd()).resolve(),
                chosen,
                mini_program,
                target_app,
                datetime.now(UTC),
                message,
            )
        except CommandError as error:
            _fail(str(error))
            return
        click.echo(f"{done.commit[:12]} {done.subject}\npush it (or open a pull request) to act")


_rollout_command("promote", Command.PROMOTE, "Pass the current pause or halt (--full: to 100%).")
_rollout_command("pause", Command.PAUSE, "Hold the rollout at its current exposure.")
_rollout_command("resume", Command.RESUME, "Continue a paused rollout.")
_rollout_command("retry", Command.RETRY, "Run a failed or inconclusive analysis again.")
_rollout_command("abort", Command.ABORT, "Cancel the version on this app (irreversible).")


def main() -> None:
    """Console-script entry point (``relctl``, ``python -m controller``): the process ends here.

    The interpreter's last garbage collection at exit walks every object the command made
    (~20 ms after a check of 10,000 releases) to find cycles the exit frees anyway; they are
    frozen first, so it skips them. Finalizers still run (``atexit``, ``weakref.finalize``),
    and relctl closes its files, repositories and processes explicitly before this.
    """
    try:
        cli()
    finally:
        gc.freeze()
