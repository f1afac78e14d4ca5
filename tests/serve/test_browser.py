"""A real browser (Debian's headless Chromium + chromedriver, via selenium) against a real server.

The page must show exactly the k cell ids ``/api/query`` returns for an uploaded cell and, after a
click on a neighbour, exactly those of ``/api/cells/{id}/neighbours``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.serve.conftest import require_chromium, running_server, start_browser

K = 6

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


def grid_ids(driver) -> list[str]:
    return [t.get_attribute("data-cell-id") for t in driver.find_elements("css selector", "#grid .tile")]


def test_upload_then_click_shows_the_api_neighbours(serve_emb: Path, a_cell: tuple[str, Path]) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    _, image = a_cell
    with running_server(serve_emb) as url, tempfile.TemporaryDirectory() as profile:
        expected = httpx.post(
            f"{url}/api/query?k={K}", files={"image": (image.name, image.read_bytes())}, timeout=60
        ).json()["neighbours"]
        expected_ids = [n["cell_id"] for n in expected]
        driver = start_browser(profile)
        try:
            driver.get(url + "/")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: d.find_element("id", "info").text not in ("", "loading…"))
            k_box = driver.find_element("id", "k")
            k_box.clear()
            k_box.send_keys(str(K))
            driver.find_element("id", "file").send_keys(str(image))
            wait.until(lambda d: len(grid_ids(d)) == K)
            assert grid_ids(driver) == expected_ids
            text = driver.find_element("id", "grid").text
            assert expected[0]["label_name"] in text and "sim " in text

            clicked = expected_ids[1]
            after = httpx.get(
                f"{url}/api/cells/{quote(clicked, safe='')}/neighbours?k={K}", timeout=60
            ).json()
            after_ids = [n["cell_id"] for n in after["neighbours"]]
            driver.find_elements("css selector", "#grid .tile .search")[1].click()
            wait.until(lambda d: grid_ids(d) == after_ids)
            assert clicked not in grid_ids(driver)
            assert driver.find_element("id", "cell-id").get_attribute("value") == clicked
            # same-label marks follow the query cell's label
            same = driver.find_elements("css selector", "#grid .tile.same")
            assert len(same) == sum(n["label"] == after["query_label"] for n in after["neighbours"])
            logs = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
            assert not logs, logs
        finally:
            driver.quit()
