"""Open the MLflow UI the way a user does and check that a run's cycles, example tables and
cycle models show.

Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by ``make system-deps``)
opens the link ``videostar run`` printed, waits until every cycle run is listed, then clicks each
cycle, its *Artifacts* tab and ``examples.json``; then it opens the experiment's *Models* tab and
waits until it lists every cycle's LoggedModel with a column of its ``--metric``. Screenshots of
the runs page, the last table and the Models tab go to ``--screenshots`` (``failed.png`` shows
where a check stopped).

    python scripts/check_mlflow_ui.py --url 'http://127.0.0.1:5000/#/experiments/1/runs?...' \\
        --cycles 3 --screenshots work/ui
    # a local store: serve it first with `mlflow ui --backend-store-uri sqlite:///demo/mlflow.db`

Exit 0 when everything is visible, 1 with one line saying what is missing.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


class Browser:
    """Headless Chromium through the distribution's driver (nothing is downloaded); a page it
    waits on in vain is saved as ``failed.png`` in ``shots``."""

    def __init__(self, shots: Path, timeout: float):
        for path in (CHROMIUM, DRIVER):
            if not Path(path).exists():
                raise SystemExit(f"{path}: not installed (make system-deps installs it)")
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        self.shots, self.timeout = shots, timeout

    def _wait(self, until: Callable[[], bool], what: str) -> None:
        try:
            WebDriverWait(self.driver, self.timeout).until(lambda _: until())
        except TimeoutException:
            self.driver.save_screenshot(str(self.shots / "failed.png"))
            raise AssertionError(f"{what} at {self.driver.current_url}") from None

    def page(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_for_text(self, texts: list[str], what: str) -> None:
        self._wait(lambda: all(t in self.page() for t in texts),
                   f"{what}: {', '.join(map(repr, texts))} not all shown")

    def click(self, text: str) -> None:
        """Click the element showing exactly ``text`` (a run link, a tab, an artifact)."""
        xpath = f"//*[normalize-space(text())='{text}']"
        self._wait(lambda: bool(self.driver.find_elements(By.XPATH, xpath)), f"nothing shows {text!r}")
        self.driver.find_elements(By.XPATH, xpath)[0].click()


def models_url(url: str) -> str:
    """The experiment's Models tab (its LoggedModels), from the link to its runs."""
    found = re.match(r"(.*#/experiments/[^/?]+)/runs", url)
    if not found:
        raise AssertionError(f"{url}: not a link to an experiment's runs")
    return f"{found.group(1)}/models?workflowType=machine_learning"


def check(url: str, cycles: int, screenshots: Path, timeout: float = 90.0,
          metric: str = "answer_yield") -> list[Path]:
    """The page of ``url`` lists ``cycle-0`` .. ``cycle-<n-1>``; clicking a cycle, then
    *Artifacts*, then ``examples.json`` shows its table of accepted and rejected answers with the
    verifier's reasons; the Models tab lists the cycles' models and their ``metric``. Returns the
    screenshots (the runs page, the last cycle's table, the Models tab)."""
    screenshots.mkdir(parents=True, exist_ok=True)
    names = [f"cycle-{k}" for k in range(cycles)]
    shots = [screenshots / "runs.png", screenshots / "examples.png", screenshots / "models.png"]
    ui = Browser(screenshots, timeout)
    try:
        for i, name in enumerate(names):
            ui.driver.get(url)
            ui.wait_for_text(names, "the runs page")
            if i == 0:
                ui.driver.save_screenshot(str(shots[0]))
            for target in (name, "Artifacts", "examples.json"):
                ui.click(target)
            ui.wait_for_text(["outcome", "reasons", "accepted", "rejected"], f"{name}'s examples table")
        ui.driver.save_screenshot(str(shots[1]))
        ui.driver.set_window_size(2400, 800)  # the metric columns sit right of the model attributes
        ui.driver.get(models_url(url))
        ui.wait_for_text([*names, metric], "the Models tab")
        ui.driver.save_screenshot(str(shots[2]))
    finally:
        ui.driver.quit()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the MLflow link `videostar run` printed")
    parser.add_argument("--cycles", type=int, required=True, help="cycle runs the page must list")
    parser.add_argument("--screenshots", default="work/mlflow-ui", help="folder for the PNGs")
    parser.add_argument("--metric", default="answer_yield",
                        help="a metric the Models tab must show (its columns are rendered as scrolled to, "
                             "alphabetically: the default is the first)")
    args = parser.parse_args(argv)
    try:
        shots = check(args.url, args.cycles, Path(args.screenshots), metric=args.metric)
    except (AssertionError, WebDriverException) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    print("MLflow UI shows the cycles, their example tables and models: " + ", ".join(map(str, shots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
