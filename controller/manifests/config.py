"""``relctl.yaml`` and ``access.yaml``: the repository's rules and its members.

:func:`load_config` builds the :class:`~controller.model.RepoConfig` every release is judged
by (target-app rules within what the ``platform:`` adapter can do, see
``controller.platform.capabilities``); :func:`load_access` the :class:`Access` members
(``controller.access`` enforces them along the history). Both return located problems,
never raise on bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.manifests.documents import as_files, located_in, read_document
from controller.manifests.patterns import PatternError, compile_pattern
from controller.manifests.problems import Located, Problem, Severity, file_problem
from controller.manifests.quoting import quote
from controller.model import (
    DEFAULT_TESTERS_MAX,
    DEFAULT_USER_ID_PATTERN,
    AnalysisTemplate,
    FreezeWindow,
    Metric,
    Provider,
    RepoConfig,
    TargetApp,
    WindowKind,
    parse_duration,
)
from controller.platform.capabilities import Capabilities, capabilities_for
from controller.repofiles import RepoFiles
from controller.rollout import ConditionError, check_condition

CONFIG_FILE = "relctl.yaml"
ACCESS_FILE = "access.yaml"


class Role(StrEnum):
    """Platform roles (seed: "Access to release mini programs is role-based")."""

    MASTER = "master"
    OWNER = "owner"
    DEVELOPER = "developer"


@dataclass(frozen=True)
class Member:
    """A person in ``access.yaml``, identified by their git email."""

    email: str
    name: str
    role: Role
    mini_programs: tuple[str, ...] = ()
    signing_key: str | None = None

    def may_release(self, mini_program: str) -> bool:
        """Masters release every mini program; owners and developers their assigned ones."""
        return self.role is Role.MASTER or mini_program in self.mini_programs


@dataclass(frozen=True)
class Access:
    """``access.yaml``: the members of the release repository."""

    members: tuple[Member, ...] = ()

    def member(self, email: str) -> Member | None:
        """The member with this git email (case-insensitive), if any."""
        wanted = email.casefold()
        return next((m for m in self.members if m.email.casefold() == wanted), None)


def load_config(files: RepoFiles | Path) -> tuple[RepoConfig | None, list[Problem]]:
    """``relctl.yaml`` of ``files`` (a directory means its work tree): (config, []) or
    (None, problems) when it is missing, not a regular file, too large or invalid."""
    files = as_files(files)
    if files.entry(CONFIG_FILE) is None:
        return None, [
            file_problem(
                CONFIG_FILE,
                "missing-config",
                f"{CONFIG_FILE} not found at the repository root",
                "every release repository declares its target apps in relctl.yaml; "
                "see examples/relctl.yaml",
            )
        ]
    doc = read_document(files, CONFIG_FILE, "Config")
    if not doc.ok:
        return None, list(doc.problems)
    value = doc.value
    problems: list[Problem] = []
    apps: dict[str, TargetApp] = {}
    capabilities = capabilities_for(value.get("platform"))
    for app_id, spec in value["targetApps"].items():
        pattern = spec.get("userIdPattern", DEFAULT_USER_ID_PATTERN)
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            at = located_in(files, CONFIG_FILE)
            problems.append(
                at.problem(
                    ["targetApps", app_id, "userIdPattern"],
                    "user-id-pattern",
                    f"{quote(pattern)} is not an RE2 pattern: {exc}",
                    "relctl requires RE2 syntax (matched in linear time against the whole "
                    "id): no backreferences or lookaround, e.g. ^[0-9]{16}$",
                )
            )
            continue
        values = spec.get("grayscaleValues")
        testers_max = spec.get("testersMax")
        app_problems = _beyond_platform(files, capabilities, app_id, values, testers_max)
        if app_problems:
            problems.extend(app_problems)
            continue
        if values is None:  # the platform's steps, when it has fixed ones
            values = capabilities.grayscale_values
        if testers_max is None:
            testers_max = min(DEFAULT_TESTERS_MAX, capabilities.testers_max or DEFAULT_TESTERS_MAX)
        apps[app_id] = TargetApp(
            id=app_id,
            name=spec["name"],
            environment=spec.get("environment", "production"),
            testers_max=testers_max,
            grayscale_values=tuple(sorted(values)) if values is not None else None,
            user_id_pattern=pattern,
        )
    templates = _analysis_templates(files, value.get("analysisTemplates", {}), problems)
    windows = _freeze_windows(files, value.get("freezeWindows", []), apps, problems)
    if problems:
        return None, problems
    return (
        RepoConfig(
            target_apps=MappingProxyType(dict(sorted(apps.items()))),
            platform=value.get("platform"),
            require_signed_commits=value.get("policy", {}).get("requireSignedCommits", False),
            notifications=tuple(value.get("notifications", ())),
            analysis_templates=MappingProxyType(templates),
            stop_the_line=value.get("stopTheLine"),
            freeze_windows=windows,
        ),
        [],
    )


def _freeze_windows(
    files: RepoFiles,
    data: list[Mapping[str, Any]],
    apps: Mapping[str, TargetApp],
    problems: list[Problem],
) -> tuple[FreezeWindow, ...]:
    """``freezeWindows``: cron schedules that parse, known time zones, declared apps."""
    from croniter import croniter  # only repositories with freeze windows pay its import

    windows: list[FreezeWindow] = []
    for index, item in enumerate(data):
        where: list[str | int] = ["freezeWindows", index]
        found: list[Problem] = []
        if not croniter.is_valid(item["schedule"]) or len(item["schedule"].split()) != 5:
            found.append(
                located_in(files, CONFIG_FILE).problem(
                    [*where, "schedule"],
                    "freeze-schedule",
                    f"{quote(item['schedule'])} is not a five-field cron expression",
                    "minute hour day-of-month month day-of-week, e.g. 0 18 * * 5",
                )
            )
        zone = item.get("timeZone", "UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            found.append(
                located_in(files, CONFIG_FILE).problem(
                    [*where, "timeZone"],
                    "freeze-time-zone",
                    f"unknown time zone {quote(zone)}",
                    "an IANA time zone, e.g. Asia/Manila or UTC",
                )
            )
        for position, app in enumerate(item.get("targetApps", [])):
            if app not in apps:
                found.append(
                    located_in(files, CONFIG_FILE).problem(
                        [*where, "targetApps", position],
                        "unknown-target-app",
                        f"target app {quote(app)} is not declared under targetApps",
                        f"declared target apps: {', '.join(sorted(apps)) or 'none'}",
                    )
                )
        problems.extend(found)
        if found:
            continue
        windows.append(
            FreezeWindow(
                name=item["name"],
                kind=WindowKind(item["kind"]),
                schedule=item["schedule"],
                duration=parse_duration(item["duration"]),
                time_zone=zone,
                target_apps=tuple(item.get("targetApps", ())),
            )
        )
    return tuple(windows)


def _analysis_templates(
    files: RepoFiles, data: Mapping[str, Any], problems: list[Problem]
) -> dict[str, AnalysisTemplate]:
    """``analysisTemplates``: conditions in the safe language, metric names unique."""
    templates: dict[str, AnalysisTemplate] = {}
    for name, template in sorted(data.items()):
        metrics: list[Metric] = []
        seen: set[str] = set()
        for index, item in enumerate(template["metrics"]):
            where: list[str | int] = ["analysisTemplates", name, "metrics", index]
            if item["name"] in seen:
                problems.append(
                    located_in(files, CONFIG_FILE).problem(
                        [*where, "name"],
                        "duplicate-metric",
                        f"metric {quote(item['name'])} appears twice in template {name}",
                        "give every metric of a template its own name",
                    )
                )
            seen.add(item["name"])
            for key in ("successCondition", "failureCondition"):
                if key not in item:
                    continue
                try:
                    check_condition(item[key])
                except ConditionError as error:
                    problems.append(
                        located_in(files, CONFIG_FILE).problem(
                            [*where, key],
                            "condition",
                            f"{quote(item[key])} is not a condition: {error}",
                            "use result, numbers, <, <=, >, >=, ==, !=, and, or, not; "
                            "e.g. result < 1.5",
                        )
                    )
            metrics.append(
                Metric(
                    name=item["name"],
                    provider=Provider(item["provider"]),
                    query=item["query"],
                    success_condition=item["successCondition"],
                    failure_condition=item.get("failureCondition"),
                    json_path=item.get("jsonPath"),
                    address=item.get("address"),
                    interval=parse_duration(item.get("interval", "0s")),
                    count=item.get("count", 1),
                    failure_limit=item.get("failureLimit", 0),
                    inconclusive_limit=item.get("inconclusiveLimit", 0),
                    min_sample_users=item.get("minSampleUsers", 0),
                )
            )
        templates[name] = AnalysisTemplate(name=name, metrics=tuple(metrics))
    return templates


def _beyond_platform(
    files: RepoFiles,
    capabilities: Capabilities,
    app_id: str,
    values: list[int] | None,
    testers_max: int | None,
) -> list[Problem]:
    """A target app's rules that ask the platform (``platform:``) for more than it offers."""
    problems: list[Problem] = []
    at = None
    outside = [v for v in values or () if not capabilities.allows_grayscale(v)]
    if outside:
        at = located_in(files, CONFIG_FILE)
        problems.append(
            at.problem(
                ["targetApps", app_id, "grayscaleValues"],
                "platform-grayscale",
                f"{capabilities.platform} cannot release grayscale "
                f"{', '.join(map(str, outside))} (it offers {capabilities.grayscale_text()})",
                "keep only values the platform offers, or remove grayscaleValues to use them all",
            )
        )
    limit = capabilities.testers_max
    if limit is not None and testers_max is not None and testers_max > limit:
        at = at or located_in(files, CONFIG_FILE)
        problems.append(
            at.problem(
                ["targetApps", app_id, "testersMax"],
                "platform-tester-limit",
                f"{capabilities.platform} accepts at most {limit} testers, not {testers_max}",
                f"set testersMax to {limit} or less",
            )
        )
    return problems


def load_access(
    files: RepoFiles | Path, *, require_signed: bool = False
) -> tuple[Access | None, list[Problem]]:
    """``access.yaml`` of ``files`` (a directory means its work tree; the access history
    passes one version as ``MemoryFiles({"access.yaml": blob})``): (None, []) when absent,
    (None, problems) when it is not a regular file, too large or invalid.

    It must leave a master (nobody else may change ``access.yaml`` or ``relctl.yaml``), and
    with ``require_signed`` (``policy.requireSignedCommits`` of ``relctl.yaml``, which is
    not always at hand) a master with a ``signingKey``: else no change to them could ever be
    trusted again.
    """
    files = as_files(files)
    if files.entry(ACCESS_FILE) is None:
        return None, []
    doc = read_document(files, ACCESS_FILE, "Access")
    if not doc.ok:
        return None, list(doc.problems)
    members: list[Member] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    at: Located | None = None
    for index, item in enumerate(doc.value["members"]):
        email = item["email"]
        role = Role(item["role"])
        if email.casefold() in seen:
            at = at or located_in(files, ACCESS_FILE)
            problems.append(
                at.problem(
                    ["members", index, "email"],
                    "duplicate-member",
                    f"{quote(email, bare=True)} is already listed "
                    f"(members[{seen[email.casefold()]}])",
                    "list each person once",
                )
            )
            continue
        seen[email.casefold()] = index
        if role is Role.MASTER and item.get("miniPrograms"):
            at = at or located_in(files, ACCESS_FILE)
            problems.append(
                at.problem(
                    ["members", index, "miniPrograms"],
                    "master-mini-programs",
                    "a master may release every mini program; miniPrograms is ignored",
                    severity=Severity.WARNING,
                )
            )
        members.append(
            Member(
                email=email,
                name=item["name"],
                role=role,
                mini_programs=tuple(item.get("miniPrograms", ())),
                signing_key=item.get("signingKey"),
            )
        )
    masters = [m for m in members if m.role is Role.MASTER]
    if not masters or (require_signed and not any(m.signing_key for m in masters)):
        at = at or located_in(files, ACCESS_FILE)
        problems.append(_lockout(at, bool(masters)))
    if any(p.severity is Severity.ERROR for p in problems):
        return None, problems
    return Access(tuple(members)), problems


def _lockout(at: Located, has_master: bool) -> Problem:
    """The problem of an access.yaml that nobody could ever change again."""
    if not has_master:
        return at.problem(
            ["members"],
            "no-master",
            "no member has role master: nobody could change access.yaml or relctl.yaml again",
            "keep at least one member with role: master",
            at_key=True,
        )
    return at.problem(
        ["members"],
        "no-signing-master",
        "policy.requireSignedCommits is true but no master has a signingKey: no change to "
        "access.yaml or relctl.yaml could ever be verified",
        'give a master the SSH key they sign with: signingKey: "ssh-ed25519 AAAA..."',
        at_key=True,
    )
