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
            assert job.execute_in_process(
                instance=instance,
                partition_key=sample.name,
                asset_selection=[dg.AssetKey("export_anomalies"), dg.AssetKey("export_drift")],
            ).success


@pytest.fixture
def webserver(data_dir, landing):
    home = data_dir / "dagster_home"
    home.mkdir()
    _history(home, landing)
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    exe = Path(sys.executable).parent / "dagster-webserver"
    log = open(data_dir / "webserver.out", "wb")
    proc = subprocess.Popen(
        [str(exe), "-h", "127.0.0.1", "-p", str(port), "-m", "mcp_training_dagster.definitions"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (data_dir / "webserver.out").read_text()[
                    -2000:
                ]
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


NAV_WIDTH = 240  # Dagster's left navigation: the same on every page, cropped away
PALETTE_COLOURS = 32  # the UI is flat colours on white: a 32-colour palette PNG keeps it readable at a third the size


def _save_small(png: bytes, path: Path, crop_nav: bool) -> None:
    """The screenshot cropped to what the page is about and saved as an optimised palette PNG (docs/ stays small)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if crop_nav:
        image = image.crop((NAV_WIDTH, 0, image.width, image.height))
    small = image.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, "PNG", optimize=True)


def _show_markdown(browser, key: str, *expected: str, timeout: float = 30):
    """Open a Markdown metadata entry (``[Show Markdown]`` in ``key``'s row) and wait for its dialog to render."""
    link = browser.find_element(
        "xpath", f"(//tr[td[1][contains(normalize-space(), '{key}')]]//*[normalize-space()='[Show Markdown]'])[last()]"
    )
    browser.execute_script("arguments[0].click()", link)
    deadline = time.monotonic() + timeout
    while True:
        dialogs = browser.find_elements("css selector", ".bp5-dialog")
        if dialogs and all(e in dialogs[-1].text for e in expected):
            return dialogs[-1]
        assert time.monotonic() < deadline, (
            f"{key}: dialog without {expected}: {dialogs[-1].text[:500] if dialogs else ''}"
        )
        time.sleep(0.5)


def _shot(browser, name: str, element=None, scroll_to: str | None = None) -> None:
    """Save the page (or one ``element`` of it, e.g. a dialog) when MCP_UI_SCREENSHOTS names a folder."""
    folder = os.environ.get("MCP_UI_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 30  # let the status columns finish loading
    while "Loading" in browser.find_element("tag name", "body").text and time.monotonic() < deadline:
        time.sleep(1)
    if scroll_to:
        target = browser.find_element("xpath", f"(//*[normalize-space()='{scroll_to}'])[1]")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", target)
    time.sleep(1.5)
    png = element.screenshot_as_png if element is not None else browser.get_screenshot_as_png()
    _save_small(png, Path(folder) / f"{name}.png", crop_nav=element is None)


def test_catalog_and_model_page_render_our_assets_and_model_card(webserver, browser):
    # The catalog renders only the rows in view: a tall window holds all of our assets at once.
    browser.set_window_size(1280, 2400)
    text = _page(browser, f"{webserver}/assets", "anomaly_model", "raw_export", "export_drift", "production_model")
    assert "export_anomalies" in text and "horizon_records" in text
    browser.set_window_size(1280, 800)
    _page(browser, f"{webserver}/assets", "anomaly_model")
    _shot(browser, "catalog")

    _page(browser, f"{webserver}/asset-groups", "Global asset lineage", "monitoring", "deployment", "ingest")
    _shot(browser, "asset_graph")

    model = _page(browser, f"{webserver}/assets/anomaly_model", "score_distribution", "model_card")
    assert "Evaluation" in model or "model_card" in model
    _shot(browser, "model_materialisation", scroll_to="Metadata")
    figure = _show_markdown(browser, "score_distribution", "threshold")
    assert figure.find_elements("tag name", "img"), "the score distribution is a picture"
    _shot(browser, "score_distribution", element=figure)

    drift = _page(browser, f"{webserver}/assets/export_drift?view=checks", "drift_within_threshold")
    _shot(browser, "drift_checks")
    assert drift

    _page(
        browser,
        f"{webserver}/assets/export_anomalies?view=partitions&partition={SYSTEM_35.name}",
        SYSTEM_35.name,
        "top_anomalies",
    )
    anomalies = _show_markdown(browser, "top_anomalies", "score", "reasons")
    _shot(browser, "export_anomalies", element=anomalies)
