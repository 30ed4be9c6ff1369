"""The web UI in a real browser: `dagster dev` on a free port with a temporary DAGSTER_HOME,
headless Chromium (Debian's /usr/bin/chromium) driven by Playwright. The test finds no community
sign-up dialog at the first visit, opens the asset graph with every group expanded, launches
"Materialize all" of the refresh job from the UI, waits for the run to succeed, opens the KM figure
asset and finds the picture in its metadata. Screenshots are saved under <reports>/ui/ (the
warehouse's reports folder of the test) and copied to warehouse/reports/ui_test/; the README's
docs/screenshots/ are taken from there.

Skipped, with the way to enable it, where Chromium or Playwright is missing:
    apt-get install -y chromium && .venv/bin/pip install playwright
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .webui import ROOT, dagster_dev, graphql

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright missing: .venv/bin/pip install playwright (see make test)")
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium missing: apt-get install -y chromium (Debian's package; Playwright's own "
                "browser download does not work here)", allow_module_level=True)






def _runs(port: int) -> list[dict]:
    data = graphql(port, '{ runsOrError(filter: {pipelineName: "refresh"}) { ... on Runs { results { runId status } } } }')
    return data["data"]["runsOrError"]["results"]


@pytest.fixture
def landed(env):
    """Drops landed beforehand with `haic run` (the UI then refreshes everything downstream)."""
    proc = subprocess.run([sys.executable, "-m", "haic_pipeline.cli", "run"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return env


def test_materialize_all_from_the_ui_and_see_the_km_figure(landed):
    shots = Path(os.environ["HAIC_WAREHOUSE"]).parent / "reports" / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with dagster_dev() as port:
            _drive(port, shots)
    finally:
        keep = ROOT / "warehouse" / "reports" / "ui_test"
        shutil.rmtree(keep, ignore_errors=True)
        if shots.exists():
            shutil.copytree(shots, keep)


def _first_visit_and_asset_graph(browser, base: str, shot: Path) -> None:
    """The first visit opens on the project, without Dagster's community sign-up dialog
    (`nux: enabled: false` in deploy/dagster.yaml); then the global asset lineage with every group
    expanded, top to bottom, fitted to a wide window: every asset is on it, named. The screenshot is
    cut to the graph and taken at 1.5 device pixels per CSS pixel, so the names read at full size."""
    width, height = 3200, 1100
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1.5)
    page = context.new_page()
    page.goto(f"{base}/asset-groups", wait_until="networkidle")
    page.wait_for_timeout(3000)  # where enabled, the dialog opens once its query has answered
    assert page.get_by_role("dialog").count() == 0
    assert page.get_by_text("Join the Dagster community").count() == 0

    page.get_by_role("button", name="Hide navigation").click()
    for item in ("Expand all groups", "Change graph to vertical orientation"):
        page.locator("#zoom-slider-container").get_by_role("button", name="settings").click()  # the graph's menu
        page.get_by_role("menuitem", name=item).click()
        page.wait_for_timeout(1000)
    page.reload(wait_until="networkidle")  # the UI keeps both choices and fits the whole graph on load
    page.wait_for_timeout(3000)
    for asset in ("patients", "cohort", "endpoints", "km_summary", "cox_models", "km_os_figure", "study_report",
                  "analysts_copy"):
        assert page.get_by_text(asset, exact=True).first.is_visible(), asset
    # the graph's extent: every node and group header is drawn in a foreignObject
    box = page.evaluate("""() => { const r = [...document.querySelectorAll('foreignObject')]
        .map(e => e.getBoundingClientRect()).filter(b => b.width > 0);
        return [Math.min(...r.map(b => b.left)), Math.min(...r.map(b => b.top)),
                Math.max(...r.map(b => b.right)), Math.max(...r.map(b => b.bottom))]; }""")
    x0, y0 = max(box[0] - 16, 0), max(box[1] - 16, 0)
    x1, y1 = min(box[2] + 16, width), min(box[3] + 16, height)
    assert x1 - x0 > 1500 and y1 - y0 > 500, box  # the expanded graph, not a few group boxes
    page.add_style_tag(content="#zoom-slider-container { visibility: hidden; }")  # the zoom buttons
    page.screenshot(path=str(shot), clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})
    context.close()


def _drive(port: int, shots: Path) -> None:
    from playwright.sync_api import sync_playwright

    before = {r["runId"] for r in _runs(port)}
    base = f"http://127.0.0.1:{port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        _first_visit_and_asset_graph(browser, base, shots / "1_asset_graph.png")
        page = browser.new_page(viewport={"width": 1500, "height": 950})

        page.goto(f"{base}/locations/__repository__@haic_pipeline/jobs/refresh", wait_until="networkidle")
        page.get_by_role("button", name="Materialize all").click(timeout=60000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "2_launched.png"))

        deadline = time.time() + 600
        status = None
        while time.time() < deadline:
            new = [r for r in _runs(port) if r["runId"] not in before]
            if new and new[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                status = new[0]["status"]
                run_id = new[0]["runId"]
                break
            time.sleep(3)
        assert status == "SUCCESS", f"refresh launched from the UI ended {status}"
        page.goto(f"{base}/runs/{run_id}", wait_until="networkidle")
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / "3_run_succeeded.png"))

        page.goto(f"{base}/assets/reports/km_os_figure", wait_until="networkidle")
        # the figure is the asset's markdown metadata: the UI shows it behind "[Show Markdown]"
        page.get_by_text("[Show Markdown]").first.click(timeout=60000)
        image = page.locator("img[src^='data:image/png;base64']").first
        image.wait_for(timeout=60000)
        box = image.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "4_km_figure_asset.png"))
        browser.close()
    assert all((shots / n).stat().st_size > 10_000 for n in
               ("1_asset_graph.png", "2_launched.png", "3_run_succeeded.png", "4_km_figure_asset.png"))
