"""End to end: a real controller on a real git repository and the simulator, the board
served on 127.0.0.1, and headless Debian Chromium (selenium) watching a release progress.

What a person sees is asserted; screenshots at desktop and phone width are saved under the
test's tmp dir (and, with ``RELCTL_BOARD_SCREENSHOT=PATH``, the desktop one is copied to PATH:
that is how ``docs/board.png`` in the README is made). Waits are bounded polls for what a
person would wait for (the page refreshing itself), never timed assertions.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from controller_world import TESTERS, World, make_world, manifest
from gitutil import isolate_git, remote_path
from sysdeps import require_program

from controller.board import board_app, repository_source
from controller.board.serve import BoardServer, bind
from controller.model import Phase

GCASH = "releases/shop/gcash.yaml"
DANA = "releases/shop/dana.yaml"
DESKTOP = (1280, 1000)
PHONE = (390, 844)
#: Upper bound for the page to refresh itself (it polls every 3 s).
REFRESH_BOUND = 30

# One transport is enough for a browser: the board reads git, not the platform.
pytestmark = [pytest.mark.timeout(240), pytest.mark.inprocess_only]


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path / "home")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    chromium = require_program("chromium", "chromium")
    chromedriver = require_program("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    files: dict[str, str | None] = {
        GCASH: manifest(),
        DANA: manifest("shop", "dana", description='Pay <b>"fast"</b> & <script>x()</script>'),
    }
    with make_world(tmp_path, files) as made:
        yield made


def shot(driver: object, path: Path, size: tuple[int, int]) -> Path:
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(driver, WebDriver)
    driver.set_window_size(*size)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size[0], max(size[1], min(int(height) + 140, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(*DESKTOP)
    return path


def settled_text(driver: object, element_id: str, wanted: str) -> str:
    """The text of ``element_id`` once it contains ``wanted`` (after a form's navigation)."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(driver, WebDriver)
    found: list[str] = []

    def has(d: WebDriver) -> bool:
        try:
            text = str(d.find_element(By.ID, element_id).text)
        except WebDriverException as exc:
            # Chromium's answer for an element of the page being replaced by the form's
            # navigation (not a StaleElementReferenceException): look again
            if "does not belong to the document" in str(exc):
                return False
            raise
        found[:] = [text]
        return wanted in text

    WebDriverWait(
        driver,
        REFRESH_BOUND,
        ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
    ).until(has)
    return found[0]


def test_a_person_watches_a_release_progress_on_the_board(
    world: World, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    assert isinstance(driver, WebDriver)
    world.run_until(
        lambda s: (
            s["shop/gcash"].phase is Phase.PILOT_TESTING
            and s["shop/dana"].phase is Phase.READY_TO_RELEASE
        )
    )
    source = repository_source(remote_path(world.remote), "main")
    server = BoardServer(board_app(source), bind("127.0.0.1", 0))
    server.start()
    try:
        driver.get(server.url)
        card = driver.find_element(By.CSS_SELECTOR, '.card[data-key="shop/gcash"]')
        assert "Pilot testing" in card.text
        assert "testers, then a person: pilot.complete: true" in card.text
        dana = driver.find_element(By.CSS_SELECTOR, '.card[data-key="shop/dana"]')
        assert "Ready to release" in dana.text and "0% of users" in dana.text
        assert "2 of 2 releases" in driver.find_element(By.ID, "count").text
        matrix = driver.find_element(By.CSS_SELECTOR, "table.matrix")
        assert "gcash" in matrix.text and "dana" in matrix.text
        shot(driver, tmp_path / "board-pilot-desktop.png", DESKTOP)

        # A person completes the pilot and opens 20%: the page follows without reloading.
        driver.execute_script("window.relctlMarker = 'same page';")
        world.edit(GCASH, manifest(complete=True, grayscale=20), "shop/gcash: pilot done, 20%")
        world.run_until(lambda s: s["shop/gcash"].grayscale == 20)
        WebDriverWait(driver, REFRESH_BOUND).until(
            lambda d: (
                "Grayscale"
                in d.find_element(By.CSS_SELECTOR, '.card[data-key="shop/gcash"] .phase').text
            )
        )
        card = driver.find_element(By.CSS_SELECTOR, '.card[data-key="shop/gcash"]')
        assert "20% of users" in card.text
        assert driver.execute_script("return window.relctlMarker") == "same page"
        assert "refreshed" in driver.find_element(By.ID, "refresh-state").text
        shown = driver.find_element(By.CSS_SELECTOR, ".revision code").text
        assert shown == driver.find_element(By.ID, "board").get_attribute("data-revision")[:12]
        desktop = shot(driver, tmp_path / "board-desktop.png", DESKTOP)
        phone = shot(driver, tmp_path / "board-phone.png", PHONE)
        assert desktop.stat().st_size > 10_000 and phone.stat().st_size > 10_000
        if target := os.environ.get("RELCTL_BOARD_SCREENSHOT"):
            shutil.copyfile(desktop, target)

        # The release page: steps with the current one marked, testers, report, commits.
        card.find_element(By.CSS_SELECTOR, "h2 a").click()
        current = driver.find_element(By.CSS_SELECTOR, ".step-current")
        assert "Grayscale" in current.text and "current step" in current.text.lower()
        assert current.get_attribute("aria-current") == "step"
        pilot = driver.find_element(By.CSS_SELECTOR, ".step-done .testers")
        assert pilot.text == f"{len(TESTERS)} testers"
        assert "% passed" in driver.find_element(By.ID, "steps-h").find_element(By.XPATH, "..").text
        commits = driver.find_element(By.CSS_SELECTOR, "table.commits").text
        assert "Maria" in commits and "shop/gcash: pilot done, 20%" in commits
        assert "unsigned" in commits
        assert "Not yet" in driver.find_element(By.ID, "qr-h").find_element(By.XPATH, "..").text

        # Who gets which version.
        box = driver.find_element(By.ID, "user")
        box.send_keys("2088000000000001")
        driver.find_element(By.CSS_SELECTOR, "form.lookup button").click()
        answer = settled_text(driver, "lookup-result", "2088000000000001")
        assert "bucket" in answer
        box = driver.find_element(By.ID, "user")
        box.clear()
        box.send_keys("<script>")
        driver.find_element(By.CSS_SELECTOR, "form.lookup button").click()
        assert "a user id is" in settled_text(driver, "lookup-result", "Cannot look up")
        shot(driver, tmp_path / "release-grayscale-phone.png", PHONE)

        # Full release: the page shows the QR code by itself.
        driver.get(server.url + "releases/shop/gcash")
        world.edit(GCASH, manifest(complete=True, grayscale=100), "shop/gcash: full release")
        world.run_until(
            lambda s: s["shop/gcash"].phase is Phase.RELEASED and bool(s["shop/gcash"].qr_code)
        )
        WebDriverWait(driver, REFRESH_BOUND).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "figure.qr svg")
        )
        assert "Released" in driver.find_element(By.CSS_SELECTOR, ".facts .phase").text
        assert not driver.find_elements(By.CSS_SELECTOR, ".step-current")
        shot(driver, tmp_path / "release-released-desktop.png", DESKTOP)

        # The hostile description never became markup.
        driver.get(server.url)
        assert not driver.find_elements(By.CSS_SELECTOR, "main b, main script")
    finally:
        server.stop()


def test_the_static_export_filters_and_looks_up_users_in_the_browser(
    browser: object, tmp_path: Path
) -> None:
    from boardutil import make_repo, make_status
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from starlette.applications import Starlette
    from starlette.staticfiles import StaticFiles

    from controller.board import export_board
    from controller.platform.sim.model import bucket

    driver = browser
    assert isinstance(driver, WebDriver)
    repo = make_repo(
        tmp_path / "repo",
        [make_status(grayscale=50), make_status("shop", "dana", Phase.PILOT_TESTING, grayscale=0)],
    )
    site = tmp_path / "site"
    export_board(repository_source(repo)(), site, datetime.now(UTC))
    app = Starlette()
    app.mount("/pages", StaticFiles(directory=site, html=True))
    server = BoardServer(app, bind("127.0.0.1", 0))
    server.start()
    try:
        driver.get(f"{server.url}pages/index.html?app=dana")
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert [c.is_displayed() for c in cards] == [True, False]
        assert driver.find_element(By.ID, "count").text == "1 of 2 releases"

        driver.get(f"{server.url}pages/index.html")
        driver.find_element(By.CSS_SELECTOR, '.card[data-key="shop/gcash"] h2 a').click()
        assert driver.current_url.endswith("/pages/releases/shop/gcash.html")
        radius = driver.find_element(By.CSS_SELECTOR, ".phase").value_of_css_property(
            "border-radius"
        )
        assert radius != "0px", "the stylesheet did not load through the relative link"
        for n in range(1, 4):
            user = f"208800000000000{n}"
            box = driver.find_element(By.ID, "user")
            box.clear()
            box.send_keys(user)
            driver.find_element(By.CSS_SELECTOR, "form.lookup button").click()
            answer = settled_text(driver, "lookup-result", user)
            assert f"bucket {bucket('shop', user)} " in answer, answer
        box = driver.find_element(By.ID, "user")
        box.clear()
        box.send_keys("no spaces allowed")
        driver.find_element(By.CSS_SELECTOR, "form.lookup button").click()
        assert "Cannot look up" in settled_text(driver, "lookup-result", "Cannot")
    finally:
        server.stop()
