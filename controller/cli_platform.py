"""``relctl platform ...``: play the platform (the embedded simulator) by hand.

For demos, tests and curious users: configure target apps, upload versions, review
applications, feed metrics, move the simulator's clock, inject faults, and look at releases
the way the platform's console shows them. Every command is a thin layer over
:class:`controller.platform.sim.Simulator`: parse options, call one method, print the
answer (``--format text|json``; the tables and pages are ``controller.output``'s).

Every command takes ``--db PATH`` (env ``RELCTL_PLATFORM_DB``, default
``.relctl/platform.db``); every command but ``init`` needs the database to exist. Exit codes:
0 success; 1 the platform refused (one line on stderr, ``error: <Code>: <message>``); 2 usage
error, or a database that is missing, not a simulator's, corrupt or read-only (one line).

Called by ``controller.cli`` (mounted as the ``platform`` group).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from controller.output.table import app_table as _app_rows
from controller.output.table import release_table as _release_rows
from controller.output.text import clock_text as _clock_text
from controller.output.text import faults_text as _faults_text
from controller.output.text import iso_time as _time
from controller.output.text import release_text as _release_text
from controller.platform.errors import PlatformError, PlatformUnusable
from controller.platform.sim import Simulator, codec
from controller.platform.sim.clock import parse_duration, to_datetime
from controller.platform.sim.model import (
    ReviewMode,
    bucket,
    parse_grayscale_values,
    qr_png,
)

DEFAULT_DB = ".relctl/platform.db"

P = ParamSpec("P")
R = TypeVar("R")


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Click callback: a duration such as ``30s``, ``2m``, ``1h``, ``1.5`` in seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


_DB_META_KEY = "relctl.platform.db"
_DB_HELP = (
    "The simulator's SQLite database. Also accepted before the command "
    "(`relctl platform --db PATH ...`); env RELCTL_PLATFORM_DB; default " + DEFAULT_DB + "."
)


def _resolve_db(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """The command's ``--db``, else the group's ``--db`` (which reads the env var), else default."""
    if value is not None:
        return value
    group_db = ctx.meta.get(_DB_META_KEY)
    if isinstance(group_db, Path):
        return group_db
    return Path(os.environ.get("RELCTL_PLATFORM_DB") or DEFAULT_DB)


def _db_option(command: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        callback=_resolve_db,
        help=_DB_HELP,
    )(command)


def _format_option(command: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output format.",
    )(command)


def _refusals(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a platform refusal into one line on stderr (exit 1), a bad value or an unusable
    database into exit 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PlatformUnusable as error:
            click.echo(f"error: {error.message}", err=True)
            raise SystemExit(2) from None
        except PlatformError as error:
            click.echo(f"error: {error.code}: {error.message}", err=True)
            raise SystemExit(1) from None
        except ValueError as error:
            raise click.UsageError(str(error)) from None

    return wrapper


@contextmanager
def _simulator(db: Path, *, create: bool = False) -> Iterator[Simulator]:
    """The simulator at ``db``; only ``init`` may create it (a typo is never a new platform)."""
    with Simulator(db, create=create) as simulator:
        yield simulator


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_DB,
    envvar="RELCTL_PLATFORM_DB",
    show_default=True,
    show_envvar=True,
    help="The simulator's SQLite database (every command also takes --db).",
)
@click.pass_context
def platform(ctx: click.Context, db: Path) -> None:
    """Operate the embedded platform simulator (for demos, tests and curious users)."""
    ctx.meta[_DB_META_KEY] = db


@platform.command()
@_db_option
@click.option("--apps", help="Create these target apps with default settings (comma-separated).")
@click.option("--manual-clock", is_flag=True, help="Start with a manual clock (tests, demos).")
@click.option(
    "--at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="With --manual-clock: the start time (UTC).",
)
@_format_option
@_refusals
def init(
    db: Path, apps: str | None, manual_clock: bool, at: datetime | None, output_format: str
) -> None:
    """Create the simulator database (and optionally target apps with defaults)."""
    with _simulator(db, create=True) as sim:
        configured = sim.init(_csv(apps))
        if manual_clock:
            sim.set_clock(manual=True, at=at)
        clock = sim.clock()
    if output_format == "json":
        _echo_json(
            {
                "db": str(db),
                "apps": [a.to_dict() for a in configured],
                "clock": clock.to_dict(),
            }
        )
        return
    click.echo(f"platform simulator ready at {db}")
    click.echo(_clock_text(clock))
    if configured:
        click.echo(_app_rows(configured))


@platform.command("set-app")
@_db_option
@click.argument("app")
@click.option("--name", help="Display name of the app.")
@click.option(
    "--pilot",
    type=click.Choice(["required", "none"]),
    help="Whether the platform requires pilot testing after approval.",
)
@click.option(
    "--review",
    type=click.Choice([m.value for m in ReviewMode]),
    help="auto: approve after --review-after; manual: `relctl platform review`; "
    "rules: reject an empty description or a banned word, else approve.",
)
@click.option(
    "--review-after",
    callback=_duration,
    metavar="DURATION",
    help="Review delay (auto and rules), e.g. 30s.",
)
@click.option(
    "--build-seconds",
    callback=_duration,
    metavar="DURATION",
    help="How long a build takes, e.g. 10s.",
)
@click.option(
    "--test-seconds",
    callback=_duration,
    metavar="DURATION",
    help="How long a compatibility test takes.",
)
@click.option("--testers-max", type=click.IntRange(min=0), help="Tester limit (default 50).")
@click.option(
    "--grayscale-values",
    help="Allowed grayscale percentages, e.g. 10,30,50 (100 always allowed); 'all' = 1-100.",
)
@click.option("--user-id-pattern", help="Regular expression every tester id must match.")
@click.option("--banned-words", help="Comma-separated words a 'rules' review rejects.")
@click.option("--users", type=click.IntRange(min=0), help="Active users (feedback metric).")
@_format_option
@_refusals
def set_app(
    *,
    db: Path,
    app: str,
    name: str | None,
    pilot: str | None,
    review: str | None,
    review_after: float | None,
    build_seconds: float | None,
    test_seconds: float | None,
    testers_max: int | None,
    grayscale_values: str | None,
    user_id_pattern: str | None,
    banned_words: str | None,
    users: int | None,
    output_format: str,
) -> None:
    """Create or change a target app's platform settings (unset options keep their value)."""
    with _simulator(db) as sim:
        settings = sim.set_app(
            app,
            name=name,
            pilot_required=None if pilot is None else pilot == "required",
            review=review,
            review_after=review_after,
            build_seconds=build_seconds,
            test_seconds=test_seconds,
            testers_max=testers_max,
            grayscale_values=(
                None if grayscale_values is None else parse_grayscale_values(grayscale_values)
            ),
            user_id_pattern=user_id_pattern,
            banned_words=None if banned_words is None else _csv(banned_words),
            users=users,
        )
    if output_format == "json":
        _echo_json(settings.to_dict())
    else:
        click.echo(_app_rows([settings]))


@platform.command()
@_db_option
@_format_option
@_refusals
def apps(db: Path, output_format: str) -> None:
    """List the configured target apps and their settings."""
    with _simulator(db) as sim:
        configured = sim.apps()
    if output_format == "json":
        _echo_json([a.to_dict() for a in configured])
    elif configured:
        click.echo(_app_rows(configured))
    else:
        click.echo("no target apps: run `relctl platform set-app APP`")


@platform.command()
@_db_option
@click.argument("mini_program")
@click.argument("version")
@click.option(
    "--compat-failures",
    multiple=True,
    help="Compatibility cases this version fails, e.g. ios:3g or android:low-end (repeatable, "
    "comma-separated).",
)
@click.option("--build-fails", is_flag=True, help="Every build of this version fails.")
@_format_option
@_refusals
def upload(
    *,
    db: Path,
    mini_program: str,
    version: str,
    compat_failures: tuple[str, ...],
    build_fails: bool,
    output_format: str,
) -> None:
    """Upload a version of a mini program (it can then be released to target apps)."""
    with _simulator(db) as sim:
        info = sim.upload(
            mini_program, version, compat_failures=compat_failures, build_fails=build_fails
        )
    if output_format == "json":
        _echo_json(codec.version_to_dict(info))
    else:
        click.echo(f"uploaded {info.mini_program} {info.version} at {_time(info.uploaded_at)}")


@platform.command()
@_db_option
@click.option("--mini-program", help="Only releases of this mini program.")
@click.option("--target-app", help="Only releases to this target app.")
@_format_option
@_refusals
def releases(
    db: Path, mini_program: str | None, target_app: str | None, output_format: str
) -> None:
    """List releases, oldest first, with their stage and grayscale."""
    with _simulator(db) as sim:
        found = sim.releases(mini_program, target_app)
    if output_format == "json":
        _echo_json([codec.snapshot_to_dict(r) for r in found])
    elif found:
        click.echo(_release_rows(found))
    else:
        click.echo("no releases")


@platform.command()
@_db_option
@click.argument("release_id")
@click.option(
    "--qr-svg", type=click.Path(dir_okay=False, path_type=Path), help="Save the QR code as SVG."
)
@click.option(
    "--qr-png",
    "qr_png_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the QR code as PNG.",
)
@_format_option
@_refusals
def show(
    db: Path, release_id: str, qr_svg: Path | None, qr_png_path: Path | None, output_format: str
) -> None:
    """Show everything observable about one release (the release progress page)."""
    with _simulator(db) as sim:
        snapshot = sim.get_release(release_id)
    if (qr_svg or qr_png_path) and snapshot.qr_code is None:
        raise click.UsageError(f"{release_id} has no QR code yet (created after release)")
    if qr_svg and snapshot.qr_code is not None:
        qr_svg.write_text(snapshot.qr_code.svg)
    if qr_png_path and snapshot.qr_code is not None:
        qr_png_path.write_bytes(qr_png(snapshot.qr_code.url))
    if output_format == "json":
        _echo_json(codec.snapshot_to_dict(snapshot))
    else:
        click.echo(_release_text(snapshot))


@platform.command()
@_db_option
@click.argument("release_id")
@click.option("--approve", is_flag=True, help="Approve the application.")
@click.option("--reject", "reject_reason", metavar="REASON", help="Reject it, with a reason.")
@_format_option
@_refusals
def review(
    db: Path, release_id: str, approve: bool, reject_reason: str | None, output_format: str
) -> None:
    """Decide an application under review, as the platform's reviewer."""
    if approve == (reject_reason is not None):
        raise click.UsageError("give exactly one of --approve or --reject REASON")
    with _simulator(db) as sim:
        snapshot = sim.review(release_id, approve, reject_reason or "")
    if output_format == "json":
        _echo_json(codec.snapshot_to_dict(snapshot))
    else:
        click.echo(f"{snapshot.release_id}: {snapshot.stage} ({snapshot.message})")


@platform.command()
@_db_option
@click.argument("release_id")
@click.option("--crash-rate", type=click.FloatRange(0, 100), help="Crash rate, percent.")
@click.option("--error-rate", type=click.FloatRange(0, 100), help="Error rate, percent.")
@_format_option
@_refusals
def metrics(
    db: Path,
    release_id: str,
    crash_rate: float | None,
    error_rate: float | None,
    output_format: str,
) -> None:
    """Set (or show) the feedback metrics the platform reports for a release."""
    with _simulator(db) as sim:
        if crash_rate is None and error_rate is None:
            feedback = sim.get_feedback(release_id)
        else:
            feedback = sim.set_metrics(release_id, crash_rate=crash_rate, error_rate=error_rate)
    if output_format == "json":
        _echo_json(codec.feedback_to_dict(feedback))
    else:
        click.echo(
            f"{release_id}: crash rate {feedback.crash_rate:g}%, error rate "
            f"{feedback.error_rate:g}%, {feedback.users_on_version} users on the version"
        )


@platform.command()
@_db_option
@click.option("--manual", "mode", flag_value="manual", help="Stop the clock (moves on --advance).")
@click.option("--real", "mode", flag_value="real", help="Follow real time again.")
@click.option(
    "--at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="With --manual: the time to stop at (UTC).",
)
@click.option(
    "--advance",
    callback=_duration,
    metavar="DURATION",
    help="Move the clock forward, e.g. 30s, 2m, 1h.",
)
@_format_option
@_refusals
def clock(
    db: Path, mode: str | None, at: datetime | None, advance: float | None, output_format: str
) -> None:
    """Show or set the simulator's clock (builds, tests and reviews take time on it)."""
    if at is not None and mode != "manual":
        raise click.UsageError("--at needs --manual")
    with _simulator(db) as sim:
        if mode is not None:
            sim.set_clock(manual=mode == "manual", at=at)
        if advance is not None:
            sim.advance(advance)
        setting = sim.clock()
    if output_format == "json":
        _echo_json({**setting.to_dict(), "now": _time(to_datetime(setting.now()))})
    else:
        click.echo(_clock_text(setting))


@platform.command()
@_db_option
@click.option("--error-rate", type=click.FloatRange(0, 1), help="Share of calls failing Transient.")
@click.option(
    "--unknown-rate",
    type=click.FloatRange(0, 1),
    help="Share of mutations that happen but answer Unknown.",
)
@click.option(
    "--rate-limited", type=click.FloatRange(0, 1), help="Share of calls refused RateLimited."
)
@click.option(
    "--retry-after",
    callback=_duration,
    metavar="DURATION",
    help="retry_after of RateLimited errors.",
)
@click.option(
    "--latency",
    callback=_duration,
    metavar="DURATION",
    help="Delay of every adapter call, e.g. 200ms.",
)
@click.option("--seed", type=int, help="Seed of the fault decisions (restarts the sequence).")
@click.option("--off", is_flag=True, help="Turn every fault off.")
@_format_option
@_refusals
def faults(
    *,
    db: Path,
    error_rate: float | None,
    unknown_rate: float | None,
    rate_limited: float | None,
    retry_after: float | None,
    latency: float | None,
    seed: int | None,
    off: bool,
    output_format: str,
) -> None:
    """Show or set fault injection on the adapter calls (the controller's side)."""
    with _simulator(db) as sim:
        settings = sim.faults(
            error_rate=error_rate,
            unknown_rate=unknown_rate,
            rate_limited_rate=rate_limited,
            retry_after=retry_after,
            latency=latency,
            seed=seed,
            off=off,
        )
    if output_format == "json":
        _echo_json(settings.to_dict())
    else:
        click.echo(_faults_text(settings))


@platform.command("who-gets")
@_db_option
@click.argument("mini_program")
@click.argument("target_app")
@click.argument("user_id")
@_format_option
@_refusals
def who_gets(
    db: Path, mini_program: str, target_app: str, user_id: str, output_format: str
) -> None:
    """Which version a user of a target app gets right now (grayscale is per user)."""
    with _simulator(db) as sim:
        version = sim.who_gets(mini_program, target_app, user_id)
    user_bucket = bucket(mini_program, user_id)
    if output_format == "json":
        _echo_json({"version": version, "bucket": user_bucket})
    else:
        click.echo(
            f"{version or 'none'} (user {user_id} is in bucket {user_bucket} of 100 for "
            f"{mini_program})"
        )


#: Environment variables of ``serve --dialect alipay`` (keys as the Alipay console shows them).
ALIPAY_APP_PUBLIC_KEY_ENV = "RELCTL_ALIPAY_APP_PUBLIC_KEY"
ALIPAY_GATEWAY_PRIVATE_KEY_ENV = "RELCTL_ALIPAY_GATEWAY_PRIVATE_KEY"
#: Environment variables of ``serve --dialect wechat``: the mini program's appid and secret.
WECHAT_ENV = ("RELCTL_WECHAT_APP_ID", "RELCTL_WECHAT_APP_SECRET")


@platform.command()
@_db_option
@click.option(
    "--listen",
    default="127.0.0.1:8040",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on (loopback by default; put TLS in front for anything else).",
)
@click.option(
    "--dialect",
    type=click.Choice(["relctl", "alipay", "wechat"]),
    default="relctl",
    show_default=True,
    help="relctl: the HTTP contract (schemas/platform-openapi.yaml); alipay: the Alipay Open "
    "Platform gateway (POST /gateway.do, RSA2); wechat: WeChat's cgi-bin/token and wxa/*.",
)
@click.option(
    "--target-app",
    help="With --dialect alipay|wechat: the simulator's target app the gateway releases to "
    "(default: the dialect's name).",
)
@_refusals
def serve(db: Path, listen: str, dialect: str, target_app: str | None) -> None:
    """Serve the simulator over HTTP, in relctl's contract or a vendor's dialect.

    relctl: the controller uses it with `--platform http://HOST:PORT`; every request needs the
    bearer token of RELCTL_PLATFORM_TOKEN (on both sides). alipay: requests are RSA2-signed with
    the app's key (its public key in RELCTL_ALIPAY_APP_PUBLIC_KEY), answers signed with the
    gateway's (RELCTL_ALIPAY_GATEWAY_PRIVATE_KEY). wechat: one mini program, its appid and
    secret in RELCTL_WECHAT_APP_ID and RELCTL_WECHAT_APP_SECRET. Keys, secrets and tokens are
    never printed.
    """
    import uvicorn

    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"{listen!r}: use HOST:PORT", param_hint="--listen")
    with _simulator(db) as simulator:
        if dialect == "alipay":
            app = _alipay_gateway(simulator, target_app or dialect)
        elif dialect == "wechat":
            from controller.platform.wechat.gateway import create_gateway

            appid, secret = (os.environ.get(name, "") for name in WECHAT_ENV)
            if not appid or not secret:
                raise click.UsageError(f"--dialect wechat needs {' and '.join(WECHAT_ENV)}")
            app = create_gateway(simulator, apps={appid: secret}, target_app=target_app or dialect)
        else:
            from controller.platform.http.contract import TOKEN_ENV
            from controller.platform.http.server import create_app

            token = os.environ.get(TOKEN_ENV, "")
            if not token:
                raise click.UsageError(f"set {TOKEN_ENV} to the bearer token clients must send")
            app = create_app(simulator, token=token)
        click.echo(f"serving {db} ({dialect}) on http://{listen} (Ctrl-C stops)", err=True)
        uvicorn.run(app, host=host.strip("[]"), port=int(port_text), log_level="warning")


def _alipay_gateway(simulator: Simulator, target_app: str) -> Any:
    from controller.platform.alipay import wire
    from controller.platform.alipay.gateway import create_gateway

    keys = {}
    for name in (ALIPAY_APP_PUBLIC_KEY_ENV, ALIPAY_GATEWAY_PRIVATE_KEY_ENV):
        keys[name] = os.environ.get(name, "")
        if not keys[name]:
            raise click.UsageError(f"--dialect alipay needs {name}")
    try:
        app_public = wire.load_public_key(keys[ALIPAY_APP_PUBLIC_KEY_ENV])
        gateway_private = wire.load_private_key(keys[ALIPAY_GATEWAY_PRIVATE_KEY_ENV])
    except ValueError:  # the message of a key parser may quote the key: never show it
        raise click.UsageError(
            f"{ALIPAY_APP_PUBLIC_KEY_ENV} must be an RSA public key and "
            f"{ALIPAY_GATEWAY_PRIVATE_KEY_ENV} an RSA private key (base64 body or PEM)"
        ) from None
    return create_gateway(simulator, app_public_key=app_public,
                          gateway_private_key=gateway_private, target_app=target_app)  # fmt: skip
