"""The semantic checks of one Release: what its schema cannot express.

:class:`ReleaseChecker` turns a schema-valid manifest into a typed
:class:`~controller.model.Release`, or into located problems: metadata matches the path,
one manifest per (mini program, target app), the target app is declared, tester files and
ids, the tester limit, grayscale steps, cancel with grayscale. Runs in the caller only.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from controller.manifests.config import CONFIG_FILE
from controller.manifests.documents import Document, located_in
from controller.manifests.patterns import compile_pattern
from controller.manifests.problems import Located, Problem, Severity, file_problem
from controller.manifests.quoting import quote
from controller.manifests.testers import TESTER_SUFFIXES, TesterFile, read_testers
from controller.model import (
    Compatibility,
    OnFailure,
    Pilot,
    Provider,
    Release,
    ReleaseSpec,
    RepoConfig,
    Rollout,
    RolloutStep,
    StepKind,
    TargetApp,
    WaveGate,
    parse_duration,
)
from controller.platform.capabilities import capabilities_for
from controller.repofiles import EntryKind, RepoFiles, check_path
from controller.rollout import snap

RELEASES_DIR = "releases"
MANIFEST_SUFFIXES = (".yaml", ".yml")


def release_key(file: str) -> str | None:
    """``releases/<mp>/<app>.yaml`` -> ``<mp>/<app>``; None for any other path."""
    parts = file.split("/")
    if (
        len(parts) == 3
        and parts[0] == RELEASES_DIR
        and parts[1]
        and parts[2].endswith(MANIFEST_SUFFIXES)
    ):
        stem = parts[2].rpartition(".")[0]
        return f"{parts[1]}/{stem}" if stem else None
    return None


def enumerate_inline(testers: Iterable[str]) -> Iterator[tuple[str, int | tuple[str, int, int]]]:
    """Inline testers with their index (their location in the manifest)."""
    for index, user_id in enumerate(testers):
        yield user_id, index


class ReleaseChecker:
    """Semantic checks of schema-valid manifests against the config and the repository."""

    def __init__(
        self,
        files: RepoFiles,
        config: RepoConfig | None,
        listings: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """``listings``: names in directories already listed (by the scan), by directory."""
        self.files = files
        self.config = config
        self._tester_files: dict[str, TesterFile] = {}
        self._listings: dict[str, frozenset[str]] = dict(listings or {})
        #: Tester file paths the last :meth:`check` looked up in the repository (what its
        #: outcome depends on besides the manifest and the config).
        self.consulted: list[str] = []

    def check(
        self, doc: Document, *, duplicates: bool = True
    ) -> tuple[Release | None, list[Problem]]:
        """The release of a schema-valid manifest, or None, and the problems found.

        ``duplicates=False`` leaves out the one check across files (:meth:`duplicate`): the
        rest depends only on the manifest, the config and the tester files it names
        (:attr:`consulted`), which is what a cache may keep."""
        self.consulted = []
        file = doc.file
        key = release_key(file)
        assert key is not None
        mini_program, app_id = key.split("/")
        value = doc.value
        lazy: list[Located] = []

        def located() -> Located:
            if not lazy:
                lazy.append(located_in(self.files, file))
            return lazy[0]

        problems: list[Problem] = []
        metadata = value["metadata"]
        for name, expected in (("miniProgram", mini_program), ("targetApp", app_id)):
            if metadata[name] != expected:
                problems.append(
                    located().problem(
                        ["metadata", name],
                        "path-mismatch",
                        f"metadata.{name} is {quote(metadata[name])} but the file is {file}",
                        f"the path is releases/<miniProgram>/<targetApp>.yaml: set {name}: "
                        f"{expected} or move the file",
                    )
                )
        twin = self.duplicate(file, key) if duplicates else None
        if twin is not None:
            problems.append(twin)
        if self.config is None:
            return None, problems
        app = self.config.target_apps.get(app_id)
        if app is None:
            declared = ", ".join(self.config.target_apps) or "none"
            problems.append(
                located().problem(
                    ["metadata", "targetApp"],
                    "unknown-target-app",
                    f"target app {quote(app_id)} is not declared in {CONFIG_FILE}",
                    f"declared target apps: {declared}",
                )
            )
            return None, problems
        spec = value["spec"]
        testers, tester_files, tester_problems = self._testers(
            file, spec.get("pilot", {}), app, located
        )
        problems.extend(tester_problems)
        grayscale = int(spec.get("grayscale", 0))
        problems.extend(self._beyond_platform(spec, located))
        capabilities = capabilities_for(self.config.platform)
        if not capabilities.allows_grayscale(grayscale):
            problems.append(
                located().problem(
                    ["spec", "grayscale"],
                    "grayscale-value",
                    f"grayscale {grayscale} is not offered by {capabilities.platform} "
                    f"(target app {app.name} ({app.id}))",
                    f"allowed values: 0, {capabilities.grayscale_text()}",
                )
            )
        elif not app.allows_grayscale(grayscale):
            allowed = ", ".join(str(v) for v in (0, *(app.grayscale_values or ()), 100))
            problems.append(
                located().problem(
                    ["spec", "grayscale"],
                    "grayscale-value",
                    f"grayscale {grayscale} is not offered by {app.name} ({app.id})",
                    f"allowed values: {allowed}",
                )
            )
        if spec.get("cancel", False) and grayscale > 0:
            problems.append(
                located().problem(
                    ["spec", "cancel"],
                    "cancel-with-grayscale",
                    f"cancel: true contradicts grayscale: {grayscale} (cancel withdraws the "
                    "version from every user; grayscale asks to expose it)",
                    "to cancel, leave grayscale at its current value or 0 and set cancel: true "
                    "in a change of its own",
                )
            )
        rollout = None
        if "rollout" in spec:
            rollout = self._rollout(spec, app, located, problems)
        if any(p.severity is Severity.ERROR for p in problems):
            return None, problems
        compatibility = spec.get("compatibility", {})
        pilot = spec.get("pilot", {})
        release = Release(
            mini_program=mini_program,
            target_app=app_id,
            environment=app.environment,
            path=file,
            sources=(file, *tester_files),
            spec=ReleaseSpec(
                version=spec["version"],
                basic_info=MappingProxyType(dict(spec.get("basicInfo", {}))),
                configuration=MappingProxyType(dict(spec.get("configuration", {}))),
                compatibility=Compatibility(
                    min_pass_rate=float(compatibility.get("minPassRate", 95.0)),
                    retest=int(compatibility.get("retest", 0)),
                ),
                pilot=Pilot(testers=testers, complete=bool(pilot.get("complete", False))),
                grayscale=grayscale,
                cancel=bool(spec.get("cancel", False)),
                supersede=bool(spec.get("supersede", False)),
                paused=bool(spec.get("paused", False)),
                rollout=rollout,
            ),
        )
        return release, problems

    def duplicate(self, file: str, key: str) -> Problem | None:
        """The problem of manifest ``file`` (release ``key``) when ``x.yaml`` and ``x.yml``
        both exist."""
        directory, _, name = file.rpartition("/")
        stem, _, suffix = name.rpartition(".")
        twin = f"{directory}/{stem}.{'yml' if suffix == 'yaml' else 'yaml'}"
        if twin.rpartition("/")[2] not in self._listing(directory):
            return None
        return file_problem(
            file,
            "duplicate-release",
            f"{key} is also defined by {twin}",
            "keep one manifest per (mini program, target app)",
        )

    def _rollout(
        self, spec: Mapping[str, Any], app: TargetApp, located: Any, problems: list[Problem]
    ) -> Rollout | None:
        """``spec.rollout``: steps snapped to what ``app`` offers, templates resolved."""
        assert self.config is not None
        data = spec["rollout"]
        if spec.get("grayscale", 0):
            problems.append(
                located().problem(
                    ["spec", "grayscale"],
                    "rollout-with-grayscale",
                    "grayscale and rollout both say the exposure: with a rollout the "
                    "controller raises grayscale itself",
                    "remove grayscale (or the rollout)",
                )
            )
        steps: list[RolloutStep] = []
        highest = 0
        for index, item in enumerate(data["steps"]):
            where = ["spec", "rollout", "steps", index]
            if "grayscale" in item:
                wanted = int(item["grayscale"])
                snapped = snap(wanted, app)
                if snapped is None or snapped <= highest:
                    offered = ", ".join(str(v) for v in (*(app.grayscale_values or ()), 100))
                    before = f" (it snaps to {snapped}%)" if snapped is not None else ""
                    problems.append(
                        located().problem(
                            [*where, "grayscale"],
                            "rollout-step",
                            f"step {index + 1}: {app.name} ({app.id}) cannot follow grayscale "
                            f"{wanted}%{before} after {highest}%: grayscale steps must rise",
                            f"{app.name} offers {offered}",
                        )
                    )
                    continue
                if snapped != wanted:
                    problems.append(
                        located().problem(
                            [*where, "grayscale"],
                            "rollout-snapped",
                            f"step {index + 1}: {app.name} offers no {wanted}%: the step "
                            f"snaps to {snapped}%",
                            f"write grayscale: {snapped} to say what happens",
                            severity=Severity.WARNING,
                        )
                    )
                highest = snapped
                steps.append(RolloutStep(StepKind.GRAYSCALE, grayscale=snapped))
            elif "pause" in item:
                duration = item["pause"].get("duration")
                steps.append(
                    RolloutStep(
                        StepKind.PAUSE,
                        duration=None if duration is None else parse_duration(duration),
                    )
                )
            else:
                name = item["analysis"]["template"]
                template = self.config.analysis_templates.get(name)
                if template is None:
                    known = ", ".join(self.config.analysis_templates) or "none"
                    problems.append(
                        located().problem(
                            [*where, "analysis", "template"],
                            "unknown-template",
                            f"step {index + 1}: analysis template {quote(name)} is not in "
                            f"{CONFIG_FILE}",
                            f"analysisTemplates in {CONFIG_FILE}: {known}",
                        )
                    )
                    continue
                steps.append(RolloutStep(StepKind.ANALYSIS, template=template))
        if highest == 0 and not any(p.code == "rollout-step" for p in problems):
            problems.append(
                located().problem(
                    ["spec", "rollout", "steps"],
                    "rollout-step",
                    "the rollout has no grayscale step: it would never expose anyone",
                    "add a grayscale step, e.g. - grayscale: 100",
                )
            )
        return Rollout(
            steps=tuple(steps),
            on_failure=OnFailure(data.get("onFailure", "pause")),
            promoted_at=data.get("promotedAt"),
            full=bool(data.get("full", False)),
            retry=data.get("retry"),
            paused=bool(data.get("paused", False)),
            abort=bool(data.get("abort", False)),
            override_freeze=bool(data.get("overrideFreeze", False)),
            after=self._wave(data.get("after"), app, located, problems),
        )

    def _wave(
        self,
        data: Mapping[str, Any] | None,
        app: TargetApp,
        located: Any,
        problems: list[Problem],
    ) -> WaveGate | None:
        """``after``: another declared target app, reachable grayscale."""
        assert self.config is not None
        if data is None:
            return None
        other = data["targetApp"]
        where = ["spec", "rollout", "after", "targetApp"]
        if other == app.id:
            problems.append(
                located().problem(
                    where, "wave-self", f"a rollout on {app.id} cannot wait for {app.id} itself"
                )
            )
            return None
        if other not in self.config.target_apps:
            declared = ", ".join(self.config.target_apps)
            problems.append(
                located().problem(
                    where,
                    "unknown-target-app",
                    f"target app {quote(other)} is not declared in {CONFIG_FILE}",
                    f"declared target apps: {declared}",
                )
            )
            return None
        soak = data.get("soak")
        return WaveGate(
            target_app=other,
            grayscale=int(data["grayscale"]),
            soak=parse_duration(soak) if soak else parse_duration("0s"),
        )

    def _testers(
        self, file: str, pilot: Mapping[str, Any], app: TargetApp, located: Any
    ) -> tuple[tuple[str, ...], tuple[str, ...], list[Problem]]:
        """The resolved tester set (inline + files), the tester files read (repo-relative),
        and the problems found on the way."""
        pattern = compile_pattern(app.user_id_pattern)  # compiled by load_config
        problems: list[Problem] = []
        files: list[str] = []
        # Every tester with where it was written: an inline index, or (file, line, column).
        entries: list[tuple[str, int | tuple[str, int, int]]] = list(
            enumerate_inline(pilot.get("testers", ()))
        )
        manifest_dir = file.rpartition("/")[0]
        for index, name in enumerate(pilot.get("testersFiles", ())):
            tester_file, reason = self._tester_path(manifest_dir, name)
            if tester_file is None:
                assert reason is not None
                code, message, hint = reason
                path = ["spec", "pilot", "testersFiles", index]
                problems.append(located().problem(path, code, message, hint))
                continue
            files.append(tester_file)
            parsed = self._tester_file(tester_file)
            problems.extend(parsed.problems)
            entries.extend((user_id, (tester_file, line, col)) for user_id, line, col in parsed.ids)

        def problem(where: int | tuple[str, int, int], code: str, message: str, hint: str) -> None:
            severity = Severity.WARNING if code == "duplicate-tester" else Severity.ERROR
            if isinstance(where, int):
                path = ["spec", "pilot", "testers", where]
                problems.append(located().problem(path, code, message, hint, severity=severity))
            else:
                tester_file, line, column = where
                problems.append(
                    Problem(tester_file, line, column, "", severity, code, message, hint)
                )

        seen: dict[str, int | tuple[str, int, int]] = {}
        for user_id, where in entries:
            if user_id in seen:
                first = seen[user_id]
                first_at = (
                    f"{file} spec.pilot.testers[{first}]"
                    if isinstance(first, int)
                    else f"{first[0]}:{first[1]}"
                )
                problem(
                    where,
                    "duplicate-tester",
                    f"tester {quote(user_id, bare=True)} is listed twice (first at {first_at})",
                    "remove the duplicate",
                )
            elif not pattern(user_id):
                problem(
                    where,
                    "tester-id",
                    f"{quote(user_id)} is not a valid {app.name} user id",
                    f"{app.id} user ids match {quote(app.user_id_pattern, bare=True)}",
                )
            else:
                seen[user_id] = where
        if len(seen) > app.testers_max:
            anchor = ["spec", "pilot", "testers" if pilot.get("testers") else "testersFiles"]
            problems.append(
                located().problem(
                    anchor,
                    "tester-limit",
                    f"{len(seen)} testers; {app.name} ({app.id}) accepts at most {app.testers_max}",
                    "remove testers, or split pilot testing into rounds",
                )
            )
        return tuple(sorted(seen)), tuple(files), problems

    def _beyond_platform(
        self, spec: Mapping[str, Any], located: Callable[[], Located]
    ) -> list[Problem]:
        """What the manifest asks of the platform that the platform cannot do at all."""
        assert self.config is not None
        capabilities = capabilities_for(self.config.platform)
        problems: list[Problem] = []
        pilot = spec.get("pilot", {})
        if not capabilities.pilot and (pilot.get("testers") or pilot.get("testersFiles")):
            problems.append(
                located().problem(
                    ["spec", "pilot"],
                    "platform-pilot",
                    f"{capabilities.platform} has no pilot testing",
                    "remove pilot.testers and pilot.testersFiles",
                )
            )
        gate = float(spec.get("compatibility", {}).get("minPassRate", 95.0))
        if not capabilities.compatibility_test and gate > 0:
            problems.append(
                located().problem(
                    ["spec", "compatibility", "minPassRate"],
                    "platform-compatibility",
                    f"{capabilities.platform} runs no compatibility tests, so a pass rate of "
                    f"{gate:g}% can never be reached",
                    "set compatibility.minPassRate: 0 (test compatibility outside the platform)",
                )
            )
        if not capabilities.configuration and spec.get("configuration"):
            problems.append(
                located().problem(
                    ["spec", "configuration"],
                    "platform-configuration",
                    f"{capabilities.platform} keeps no package configuration for a release, so "
                    "this configuration would never reach it",
                    "remove spec.configuration (set it in the package you upload)",
                )
            )
        rollout = spec.get("rollout")
        steps = rollout.get("steps") if isinstance(rollout, Mapping) else None
        if not capabilities.feedback_metrics and isinstance(steps, list):
            for index, step in enumerate(steps):
                analysis = step.get("analysis") if isinstance(step, Mapping) else None
                name = analysis.get("template") if isinstance(analysis, Mapping) else None
                template = self.config.analysis_templates.get(name) if name else None
                if template is None:
                    continue  # an unknown template is reported by the rollout's own check
                platform_metrics = [
                    m.name for m in template.metrics if m.provider is Provider.PLATFORM
                ]
                if platform_metrics:
                    problems.append(
                        located().problem(
                            ["spec", "rollout", "steps", index, "analysis"],
                            "platform-metrics",
                            f"{capabilities.platform} reports no feedback metrics, so the "
                            f"analysis {name} (provider: platform: "
                            f"{', '.join(platform_metrics)}) could never be measured",
                            "measure with provider prometheus or web in the template, or "
                            "replace the step with a pause",
                        )
                    )
        return problems

    def _listing(self, directory: str) -> frozenset[str]:
        names = self._listings.get(directory)
        if names is None:
            names = frozenset(entry.name for entry in self.files.children(directory))
            self._listings[directory] = names
        return names

    def _tester_path(
        self, manifest_dir: str, name: str
    ) -> tuple[str | None, tuple[str, str, str | None] | None]:
        """Repository-relative path of a tester file, or (code, message, hint) why not."""
        if "\\" in name or name.startswith("/") or name[1:2] == ":":
            return None, (
                "tester-file-path",
                f"{quote(name)} must be a relative path with '/' separators",
                "paths are relative to the manifest, e.g. testers/gcash.csv",
            )
        if not name.lower().endswith(TESTER_SUFFIXES):
            return None, (
                "tester-file-type",
                f"{quote(name)} is not a .csv or .txt file",
                "tester files are CSV or TXT with the user id in the first column",
            )
        joined = posixpath.normpath(posixpath.join(manifest_dir, name))
        if joined == ".." or joined.startswith(("../", "/")):
            return None, (
                "tester-file-path",
                f"{quote(name)} is outside the repository",
                "keep tester files in the release repository, e.g. testers/gcash.csv",
            )
        why = check_path(joined)
        if why is not None:
            return None, (
                "tester-file-path",
                f"{quote(name)}: {why}",
                "name tester files with printable characters, e.g. testers/gcash.csv",
            )
        self.consulted.append(joined)
        entry = self.files.entry(joined)
        if entry is None:
            return None, (
                "tester-file-missing",
                f"tester file {joined} not found",
                "paths are relative to the manifest's directory",
            )
        if entry.kind is EntryKind.SYMLINK:
            return None, (
                "tester-file-path",
                f"{quote(name)} is a symbolic link (or lies under one); relctl never follows links",
                "replace the link by the file itself",
            )
        return joined, None

    def _tester_file(self, file: str) -> TesterFile:
        parsed = self._tester_files.get(file)
        if parsed is None:
            parsed = self._tester_files[file] = read_testers(self.files, file)
        return parsed
