"""A small, real world for controller tests: a bare git remote, a person's clone, the
simulator with a manual clock, and the controller's own workspace.

Only the clock is fake (the simulator's manual clock, which the controller also reads).

``TRANSPORT`` (set per test by ``conftest.py``) says how the controller reaches the simulator:
``inprocess`` (the ``Simulator`` object itself) or ``http`` (the HTTP contract's server on
127.0.0.1 and the ``HttpPlatform`` adapter; people's platform-side calls stay in-process).
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from gitutil import PersonClone, make_remote
from httputil import TOKEN, serve_app

from controller.daemon import Controller
from controller.gitops import Workspace
from controller.model import Status
from controller.platform.http.client import HttpPlatform
from controller.platform.http.server import create_app
from controller.platform.protocol import Platform
from controller.platform.sim import Simulator
from controller.reconcile import PassResult
from controller.status import parse_status
from controller.trust import TrustSettings

CONFIG = """\
apiVersion: relctl/v1
kind: Config
targetApps:
  gcash: {name: GCash, environment: production, testersMax: 50}
  dana: {name: DANA, environment: production, testersMax: 20, grayscaleValues: [10, 50]}
"""

ACCESS = """\
apiVersion: relctl/v1
kind: Access
members:
  - {email: maria@example.com, name: Maria, role: master}
"""

TESTERS = ["2088000000000001", "2088000000000002"]

#: How the controller reaches the simulator: "inprocess" or "http" (see the module docstring).
TRANSPORT = "inprocess"


def manifest(
    mini_program: str = "shop",
    target_app: str = "gcash",
    *,
    version: str = "1.4.0",
    grayscale: int = 0,
    complete: bool = False,
    cancel: bool = False,
    supersede: bool = False,
    paused: bool = False,
    description: str = "Browse and pay with your wallet.",
    testers: list[str] | None = None,
    testers_files: list[str] | None = None,
    min_pass_rate: int = 95,
    page: str = "pages/index/index",
) -> str:
    """A Release manifest as a person writes it (``testers_files`` relative to it)."""
    pilot: dict[str, object] = {"testers": TESTERS if testers is None else testers}
    if testers_files:
        pilot["testersFiles"] = testers_files
    pilot["complete"] = complete
    document = {
        "apiVersion": "relctl/v1",
        "kind": "Release",
        "metadata": {"miniProgram": mini_program, "targetApp": target_app},
        "spec": {
            "version": version,
            "basicInfo": {"name": "Shop", "description": description, "slogan": "One tap"},
            "configuration": {"pages": [page]},
            "compatibility": {"minPassRate": min_pass_rate, "retest": 0},
            "pilot": pilot,
            "grayscale": grayscale,
            "cancel": cancel,
            "supersede": supersede,
            "paused": paused,
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass
class World:
    tmp: Path
    remote: str
    person: PersonClone
    simulator: Simulator
    workspace: Workspace
    controller: Controller

    # --- people ----------------------------------------------------------------------------
    def edit(self, path: str, text: str, message: str = "edit release intent") -> str:
        self.person.pull()
        return self.person.commit_and_push({path: text}, message)

    # --- the controller --------------------------------------------------------------------
    def pass_once(self) -> PassResult:
        result = self.controller.pass_once(raise_errors=True)
        assert result is not None
        return result

    def run_until(
        self, done: Callable[[dict[str, Status]], bool], *, passes: int = 30, step: float = 60
    ) -> dict[str, Status]:
        """Pass, review everything under review (approve), advance the clock; until ``done``."""
        for _ in range(passes):
            self.pass_once()
            statuses = self.statuses()
            if done(statuses):
                return statuses
            self.approve_all()
            self.simulator.advance(step)
        raise AssertionError(f"did not converge: { {k: s.phase for k, s in statuses.items()} }")

    def approve_all(self) -> None:
        for snapshot in self.simulator.releases():
            if snapshot.stage.value == "UNDER_REVIEW":
                self.simulator.review(snapshot.release_id, approve=True)

    # --- what happened ---------------------------------------------------------------------
    def statuses(self) -> dict[str, Status]:
        """The status files on the remote's main branch, parsed."""
        self.person.pull()
        found: dict[str, Status] = {}
        for path in sorted((self.person.path / "status").glob("*/*.yaml")):
            status = parse_status(path.read_bytes(), file=str(path))
            assert status is not None, f"{path} does not parse"
            found[status.key] = status
        return found

    def effects(self, operation: str | None = None) -> list[tuple[str, str]]:
        """Every platform mutation that took effect: (operation, request JSON)."""
        with sqlite3.connect(self.simulator.path) as conn:
            rows = conn.execute(
                "SELECT operation, request FROM idempotency ORDER BY created_at"
            ).fetchall()
        return [(op, req) for op, req in rows if operation is None or op == operation]


@contextmanager
def make_world(
    tmp: Path, files: dict[str, str | None], *, pilot_apps: tuple[str, ...] = ("gcash",)
) -> Iterator[World]:
    """The world with ``files`` on main (None leaves out a default file, e.g. access.yaml)."""
    base: dict[str, str | None] = {"relctl.yaml": CONFIG, "access.yaml": ACCESS}
    seeded = {path: text for path, text in {**base, **files}.items() if text is not None}
    remote = make_remote(tmp, seeded)
    person = PersonClone(remote, tmp / "person", name="Maria", email="maria@example.com")
    simulator = Simulator(tmp / "platform.db")
    simulator.set_clock(manual=True)
    for app in ("gcash", "dana"):
        simulator.set_app(
            app,
            pilot_required=app in pilot_apps,
            review="manual",
            build_seconds=10,
            test_seconds=10,
            grayscale_values=(10, 50) if app == "dana" else (),
        )
    simulator.upload("shop", "1.4.0")
    workspace = Workspace(remote, "main", tmp / "controller")
    workspace.open()
    # The operator anchors trust at the seeded commit (outside the repository).
    anchor = subprocess.run(
        ["git", "ls-remote", remote, "refs/heads/main"], check=True, capture_output=True, text=True
    ).stdout.split()[0]
    with ExitStack() as stack:
        adapter: Platform = simulator
        if TRANSPORT == "http":
            url = stack.enter_context(serve_app(create_app(simulator, token=TOKEN)))
            # only the clock is fake: the adapter's short Retry-After waits are skipped
            http = HttpPlatform(url, token=TOKEN, sleep=lambda _seconds: None)
            stack.callback(http.close)
            adapter = http
        controller = Controller(
            workspace, adapter, now=simulator.now, trust=TrustSettings(anchor=anchor)
        )
        try:
            yield World(tmp, remote, person, simulator, workspace, controller)
        finally:
            workspace.close()
            simulator.close()
