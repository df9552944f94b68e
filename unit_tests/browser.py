"""Label on the labeling page in a real headless browser: Debian's chromium through its chromedriver,
both from apt (`.ci/run` installs them); nothing downloads a browser or a driver.

`python -m unit_tests.browser PAGE --label 5 --out DIR` labels the first 5 windows with the keyboard
(one span each, the classes in turn), answers the next one "neither", exports, and prints the CSV's
path: `.ci/run` uses it on the demo's page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def available() -> str | None:
    """None when a browser test can run here, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (shutil.which(path) or os.path.exists(path))]
    return f"no {' or '.join(missing)} (apt-get install chromium chromium-driver)" if missing else None


class Page:
    """The page open in headless chromium, downloads going to `downloads`."""

    def __init__(self, page: Path, downloads: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        # The closed network refuses chromium's background connections: switch them off.
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1100,1000",
                     f"--user-data-dir={tempfile.mkdtemp(prefix='moola-chromium-')}"):
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
        self.downloads = Path(downloads)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        self.driver.get(Path(page).resolve().as_uri())

    def keys(self, *keys: str, shift: bool = False) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        chain = ActionChains(self.driver)
        if shift:
            chain.key_down(Keys.SHIFT)
        for key in keys:
            chain.send_keys(key)
        if shift:
            chain.key_up(Keys.SHIFT)
        chain.perform()

    def select_bars(self, n: int) -> None:
        """Move the cursor to the first shaded bar (Home), then select `n` bars from it with Shift+Right."""
        from selenium.webdriver.common.keys import Keys

        self.keys(Keys.HOME)
        self.keys(*[Keys.ARROW_RIGHT] * (n - 1), shift=True)

    def drag_bars(self, first: int, last: int, n_bars: int, width: int = 960, pad: int = 30) -> None:
        """Drag across the chart from the middle of bar `first` to the middle of bar `last` (the page draws
        `n_bars` bars across `width` pixels less `pad` on each side)."""
        from selenium.webdriver.common.action_chains import ActionChains

        chart = self.driver.find_element("id", "chart")
        middle = [pad + (bar + 0.5) * (width - 2 * pad) / n_bars for bar in (first, last)]
        start = round(middle[0] - chart.size["width"] / 2)  # offsets from the element's centre
        ActionChains(self.driver).move_to_element_with_offset(chart, start, 0).click_and_hold() \
            .move_by_offset(round(middle[1] - middle[0]), 0).release().perform()

    def text(self, element_id: str) -> str:
        return self.driver.find_element("id", element_id).text

    def export(self, timeout: float = 10.0) -> Path:
        """Press `e` and wait for labels.csv in the downloads folder."""
        self.keys("e")
        target = self.downloads / "labels.csv"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if target.is_file() and not list(self.downloads.glob("*.crdownload")):
                return target
            time.sleep(0.1)
        raise TimeoutError(f"the page's export wrote no {target} within {timeout} s")

    def close(self) -> None:
        self.driver.quit()


def label_first(page: Path, n: int, out: Path) -> Path:
    """Label the first `n` windows (a 6-bar span each, classes in turn), answer one more "neither", export."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    data = json.loads(page.read_text().split("const DATA = ", 1)[1].split(";\n", 1)[0])
    browser = Page(page, out)
    try:
        for k in range(n):
            if data["has_spans"] and data["default_span"] is None:
                browser.select_bars(6)
            browser.keys(str(k % len(data["classes"]) + 1), "j")
        browser.keys("n")
        return browser.export()
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("page")
    parser.add_argument("--label", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    why = available()
    if why:
        raise SystemExit(f"cannot run the browser: {why}")
    print(label_first(Path(args.page), args.label, Path(args.out)))


if __name__ == "__main__":
    main()
