"""The Prefect UI, in Debian's headless chromium, shows the tiny flow run, its result table and
the papers' report artifacts with their figures; `dvc plots show` draws every plot offline.

.ci/run installs chromium and chromium-driver when missing. Screenshots go to test-output/.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from orchestration_support import REPO_ROOT, TEST_OUTPUT, shared_server, tiny_flow_run

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


def report_images(report: Path) -> int:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(report.read_text(encoding="utf-8"))
    return sum(child.type == "image" for token in tokens for child in (token.children or []))


def test_report_artifacts_show_their_figures(browser):
    """Each paper's report artifact, as `make flow` publishes it from results/, shows its figures:
    the images are in the markdown as data URIs, which the UI draws without serving any file."""
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    from pipeline.artifacts import discover_results, publish_results

    @flow(name="publish-results")
    def publish():
        return publish_results(REPO_ROOT, log=lambda *_: None)

    server = shared_server()
    with server.settings():
        keys = publish()
    papers = [p for p in discover_results(REPO_ROOT) if p.report is not None and report_images(p.report)]
    assert {"leidal2017", "pvae2018", "smart", "mortazavi2020", "crabtree2021"} <= {p.paper_id for p in papers}
    # The retrieval papers' tables reach the UI through the same code as the others: Table 2's
    # first encoder pair and Table 3.3's first metric row, with their numbers.
    for paper_id, table in (("mortazavi2020", "table2"), ("crabtree2021", "table3_3")):
        with open(REPO_ROOT / "results" / paper_id / f"{table}.csv", newline="") as f:
            first = next(csv.DictReader(f))
        key = f"{paper_id}-{table.replace('_', '-')}"
        assert key in keys
        with server.settings(), get_client(sync_client=True) as client:
            latest = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                           sort=ArtifactSort.CREATED_DESC, limit=1)[0]
        browser.get(f"{server.ui}/artifacts/artifact/{latest.id}")
        cells = [v for v in list(first.values())[:6] if v]
        wait_for_text(browser, *cells)
        screenshot(browser, f"ui-artifact-{key}.png")
    for paper in papers:
        assert paper.report_key in keys
        with server.settings(), get_client(sync_client=True) as client:
            latest = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[paper.report_key])),
                sort=ArtifactSort.CREATED_DESC, limit=1)[0]
        browser.get(f"{server.ui}/artifacts/artifact/{latest.id}")
        expected = report_images(paper.report)
        script = ("return [...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/'))"
                  ".map(i => i.complete ? i.naturalWidth : -1)")
        try:
            WebDriverWait(browser, 90, poll_frequency=0.5).until(
                lambda d: len(d.execute_script(script)) == expected and min(d.execute_script(script)) > 0)
        except TimeoutException:
            screenshot(browser, f"ui-artifact-report-{paper.paper_id}.png")
            raise AssertionError(f"{paper.report_key}: widths of the report's images {browser.execute_script(script)}, "
                                 f"expected {expected} loaded images") from None
        browser.execute_script("[...document.querySelectorAll('img')].find(i => i.src.startsWith('data:'))"
                               ".scrollIntoView({block: 'center'})")
        screenshot(browser, f"ui-artifact-report-{paper.paper_id}.png")


DRAWN = """
const out = {};
for (const div of document.querySelectorAll('body div[id]')) {
  const canvas = div.querySelector('canvas'), svg = div.querySelector('svg.marks'), img = div.querySelector('img');
  out[div.id] = canvas ? (canvas.width > 0 && canvas.height > 0 ? 'vega' : '')
              : svg ? 'vega' : img ? (img.complete && img.naturalWidth > 0 ? 'image' : '') : '';
}
return out;
"""


def test_dvc_plots_show_draws_every_plot_offline(browser, tmp_path):
    """`dvc plots show --html-template dvc-plots/offline.html` draws every declared plot whose file
    exists, with http(s) blocked in the browser; DVC's own page, which loads vega from a CDN, draws
    none of its charts under the same block (so the block is real)."""
    from dvc_render.base import Renderer
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    from dvc_support import dvc_env, dvc_json, repo_copy

    proj = repo_copy(tmp_path / "copy")
    data = dvc_json(["plots", "show"], proj)["data"]
    expected = {Renderer.remove_special_chars(name): data[name][0]["type"] for name in data if data[name]}
    assert {"vega", "image"} <= set(expected.values())
    pages = {}
    for name, extra in (("offline", ["--html-template", "dvc-plots/offline.html"]), ("cdn", [])):
        out = subprocess.run([str(Path(sys.executable).parent / "dvc"), "plots", "show", "-o", str(tmp_path / name),
                              *extra], cwd=proj, env=dvc_env(), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        pages[name] = (tmp_path / name / "index.html").as_uri()

    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*"]})
    try:
        browser.get(pages["offline"])
        try:
            WebDriverWait(browser, 60, poll_frequency=0.5).until(
                lambda d: all(d.execute_script(DRAWN).get(i) == kind for i, kind in expected.items()))
        except TimeoutException:
            drawn = browser.execute_script(DRAWN)
            missing = sorted(i for i in expected if drawn.get(i) != expected[i])
            raise AssertionError(f"not drawn offline: {missing}") from None
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1400, min(height + 100, 16000))
        screenshot(browser, "dvc-plots-offline.png")
        browser.set_window_size(1400, 1000)

        browser.get(pages["cdn"])
        time.sleep(3)   # the CDN's scripts fail at once when blocked; a chart would be drawn by now
        drawn = browser.execute_script(DRAWN)
        assert not [i for i, kind in drawn.items() if kind == "vega"], "the CDN page drew a chart: network not blocked"
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
