"""The real Dagster UI in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium;
nothing is downloaded at run time).

A persistent instance gets a real history (ingest of the real samples, a training run, verdicts and drift),
then ``dagster-webserver`` serves it on 127.0.0.1 and the browser checks what a person would look for: our
assets in the catalog, and the model card and score figure on the model's page. With
``MCP_UI_SCREENSHOTS=<folder>`` the pages are also saved as PNGs (that is how docs/ui/ is made).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import dagster as dg
from mcp_training_dagster_tests.conftest import HOSTAPD_1824, SYSTEM_35, copy_sample
from mcp_training_dagster_tests.defs.conftest import REPO_ROOT, run_ingest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="apt-get install chromium chromium-driver"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _history(home: Path, landing: Path) -> None:
    """What a few minutes of `mcp-training up` leaves behind, executed in process against the same instance."""
    from mcp_training_dagster.definitions import build_definitions

    defs = build_definitions()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for sample in (HOSTAPD_1824, SYSTEM_35):
            copy_sample(sample.name, landing)
            assert run_ingest(defs, instance, sample.name).success
        assert defs.resolve_job_def("train_job").execute_in_process(instance=instance).success
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("drift_baseline")]).success
        for sample in (HOSTAPD_1824, SYSTEM_35):
            assert job.execute_in_process(instance=instance, partition_key=sample.name, asset_selection=[
                dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")]).success


@pytest.fixture
def webserver(data_dir, landing):
    home = data_dir / "dagster_home"
    home.mkdir()
    _history(home, landing)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    exe = Path(sys.executable).parent / "dagster-webserver"
    log = open(data_dir / "webserver.out", "wb")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port), "-m", "mcp_training_dagster.definitions"],
                            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (data_dir / "webserver.out").read_text()[-2000:]
                time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _page(browser, url: str, *expected: str, timeout: float = 60) -> str:
    """Load ``url`` and wait until every expected text is rendered (the UI renders client-side)."""
    browser.get(url)
    deadline = time.monotonic() + timeout
    while True:
        text = browser.find_element("tag name", "body").text
        if all(e in text for e in expected):
            return text
        assert time.monotonic() < deadline, f"{url}: missing {[e for e in expected if e not in text]}\n{text[:1500]}"
        time.sleep(1)


def _shot(browser, name: str) -> None:
    folder = os.environ.get("MCP_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 30  # let the status columns finish loading
        while "Loading" in browser.find_element("tag name", "body").text and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(1.5)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_catalog_and_model_page_render_our_assets_and_model_card(webserver, browser):
    text = _page(browser, f"{webserver}/assets", "anomaly_model", "raw_export", "export_drift", "production_model")
    assert "export_anomalies" in text
    _shot(browser, "catalog")

    _page(browser, f"{webserver}/asset-groups", "Global asset lineage", "monitoring", "deployment", "ingest")
    _shot(browser, "asset_graph")

    model = _page(browser, f"{webserver}/assets/anomaly_model", "score_distribution", "model_card")
    assert "Evaluation" in model or "model_card" in model
    _shot(browser, "model_materialisation")

    drift = _page(browser, f"{webserver}/assets/export_drift?view=checks", "drift_within_threshold")
    _shot(browser, "drift_checks")
    assert drift

    _page(browser, f"{webserver}/assets/export_anomalies?view=partitions&partition={SYSTEM_35.name}", SYSTEM_35.name)
    _shot(browser, "export_anomalies")
