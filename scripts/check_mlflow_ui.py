"""Open the MLflow UI the way a user does and check that a run's cycles and example tables show.

Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by ``make system-deps``)
opens the link ``videostar run`` printed, waits until every cycle run is listed, then opens each
cycle's ``examples.json`` table; screenshots of both pages go to ``--screenshots``.

    python scripts/check_mlflow_ui.py --url 'http://127.0.0.1:5000/#/experiments/1/runs?...' \\
        --cycles 3 --screenshots work/ui
    # a local store: serve it first with `mlflow ui --backend-store-uri sqlite:///demo/mlflow.db`

Exit 0 when everything is visible, 1 with one line saying what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser() -> webdriver.Chrome:
    """Headless Chromium through the distribution's driver (nothing is downloaded)."""
    for path in (CHROMIUM, DRIVER):
        if not Path(path).exists():
            raise SystemExit(f"{path}: not installed (make system-deps installs chromium chromium-driver)")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait_for_text(driver: webdriver.Chrome, texts: list[str], timeout: float, what: str) -> None:
    """Wait until every text is on the page; fail with the ones that never appeared."""
    def page() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    try:
        WebDriverWait(driver, timeout).until(lambda d: all(t in page() for t in texts))
    except TimeoutException:
        missing = [t for t in texts if t not in page()]
        raise AssertionError(f"{what}: {', '.join(map(repr, missing))} not shown at {driver.current_url}"
                             ) from None


def check(url: str, cycles: int, screenshots: Path, timeout: float = 90.0) -> list[Path]:
    """The runs page lists ``cycle-0`` .. ``cycle-<n-1>``; each cycle run's examples table shows
    accepted and rejected answers with the verifier's reasons. Returns the screenshots."""
    from mlflow import MlflowClient

    screenshots.mkdir(parents=True, exist_ok=True)
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    experiment = parts.fragment.split("/")[2]
    names = [f"cycle-{k}" for k in range(cycles)]
    shots = []
    driver = browser()
    try:
        driver.get(url)
        wait_for_text(driver, names, timeout, "the runs page")
        shots.append(screenshots / "runs.png")
        driver.save_screenshot(str(shots[-1]))
        client = MlflowClient(base)
        runs = {r.info.run_name: r.info.run_id for r in client.search_runs([experiment])}
        for name in names:
            driver.get(f"{base}/#/experiments/{experiment}/runs/{runs[name]}/artifacts/examples.json")
            wait_for_text(driver, ["examples.json", "outcome", "reasons", "accepted", "rejected"],
                          timeout, f"{name}'s examples table")
        shots.append(screenshots / "examples.png")
        driver.save_screenshot(str(shots[-1]))
    finally:
        driver.quit()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the MLflow link `videostar run` printed")
    parser.add_argument("--cycles", type=int, required=True, help="cycle runs the page must list")
    parser.add_argument("--screenshots", default="work/mlflow-ui", help="folder for the PNGs")
    args = parser.parse_args(argv)
    try:
        shots = check(args.url, args.cycles, Path(args.screenshots))
    except (AssertionError, WebDriverException, KeyError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    print("MLflow UI shows the cycles and their example tables: " + ", ".join(map(str, shots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
