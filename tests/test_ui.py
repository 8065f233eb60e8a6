"""The Prefect UI, in Debian's headless chromium, shows the tiny flow run and its result table.

.ci/run installs chromium and chromium-driver when missing. Screenshots go to test-output/.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from orchestration_support import TEST_OUTPUT, tiny_flow_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.ui


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: .ci/run installs them with apt-get")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="vgs-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags that keep chromium quiet on a machine without outside network.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_flow_run(tmp_path_factory.mktemp("ui"))


def wait_for_text(driver, *texts, timeout=90):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts))
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"page {driver.current_url} never showed {texts}; it shows:\n{body[:3000]}") from None


def screenshot(driver, name: str):
    TEST_OUTPUT.mkdir(exist_ok=True)
    path = TEST_OUTPUT / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, "an empty screenshot"
    return path


def click_text(driver, text, timeout=60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # Prefect's tabs are <li class="p-tab">; buttons and links for anything else.
    xpath = f"//*[self::button or self::a or self::li][normalize-space(.)='{text}']"
    WebDriverWait(driver, timeout).until(ec.element_to_be_clickable((By.XPATH, xpath))).click()


def test_flow_run_page_shows_the_run_and_its_stage_tasks(browser, tiny):
    """The first tiny run: retried, failed and skipped stages, each a task run named after it."""
    server, state = tiny["server"], tiny["first"]
    from prefect import get_client

    with server.settings(), get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    browser.get(f"{server.ui}/runs/flow-run/{run.id}")
    wait_for_text(browser, run.name, "Failed", "dvc-pipeline")
    screenshot(browser, "ui-flow-run.png")
    click_text(browser, "Task Runs")
    wait_for_text(browser, "gen_a", "gen_b", "combine", "flaky", "broken", "after_broken", "report",
                  "Skipped", "Completed", "Failed")
    screenshot(browser, "ui-flow-run-tasks.png")


def test_result_table_artifact_shows_the_numbers(browser, tiny):
    server = tiny["server"]
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with server.settings(), get_client(sync_client=True) as client:
        latest = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["tinypaper-table1"])),
                                       sort=ArtifactSort.CREATED_DESC, limit=1)[0]
    # The key's page lists its versions; each version's page shows the table.
    browser.get(f"{server.ui}/artifacts/key/tinypaper-table1")
    wait_for_text(browser, "tinypaper-table1", "results/tinypaper/table1.csv")
    browser.get(f"{server.ui}/artifacts/artifact/{latest.id}")
    # The cells of results/tinypaper/table1.csv, "n/a" for the value the paper text lost.
    wait_for_text(browser, "purity_ours", "tiny-a", "tiny-b", "0.777", "0.912", "n/a")
    screenshot(browser, "ui-artifact-table.png")
