"""The page as a haematologist uses it, in headless Chromium: one test per problem of the issue
"A similar-cell page a haematologist trusts" (1: full resolution, 2: a results panel that answers what
is on screen, 3: an indexed cell uploaded is named, 4: warnings, 5: summary and downloads, 6: the
map, 8: huge headers, TIFF previews, large k; 7, a folder without a map, is checked on the API
in ``test_app.py``).

One server (a copy of the generated AML-LMU folder with a seeded random map) and one browser for the
module; each test loads the page afresh.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.serve.conftest import (
    require_chromium,
    running_server,
    start_browser,
    tiff_declaring,
    with_fake_umap,
)

pytestmark = pytest.mark.slow
WAIT = 60


@pytest.fixture(scope="module")
def url(serve_emb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_chromium()
    emb = with_fake_umap(serve_emb, tmp_path_factory.mktemp("page") / "emb")
    with running_server(emb) as base:
        yield base


@pytest.fixture(scope="module")
def browser(url: str) -> Iterator[object]:
    with tempfile.TemporaryDirectory() as profile:
        driver = start_browser(profile)
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def page(browser, url: str):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element("id", "info").text not in ("", "loading…"))
    WebDriverWait(browser, WAIT).until(lambda d: d.execute_script("return state.map !== null"))
    yield browser
    # refused requests are logged by the browser as network errors; script errors never
    errors = [
        e for e in browser.get_log("browser") if e.get("level") == "SEVERE" and e.get("source") != "network"
    ]
    assert not errors, errors


def wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def grid_ids(driver) -> list[str]:
    return [t.get_attribute("data-cell-id") for t in driver.find_elements("css selector", "#grid .tile")]


def set_k(driver, k: int) -> None:
    box = driver.find_element("id", "k")
    box.clear()
    box.send_keys(str(k))


def upload(driver, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))


def shown(driver, element_id: str) -> bool:
    return bool(driver.find_element("id", element_id).is_displayed())


def image_file(tmp_path: Path, size: tuple[int, int], name: str = "odd.png") -> Path:
    path = tmp_path / name
    Image.new("RGB", size, (240, 180, 200)).save(path)
    return path


def test_1_tiles_open_the_original_at_full_size(page, a_cell: tuple[str, Path]) -> None:
    cell_id, path = a_cell
    set_k(page, 6)
    page.find_element("id", "cell-id").send_keys(cell_id + "\n")
    wait(page, lambda d: len(grid_ids(d)) == 6)
    first = grid_ids(page)[0]
    page.find_elements("css selector", "#grid .tile .view")[0].click()
    wait(page, lambda d: "px" in d.find_element("id", "viewer-size").text)
    size = page.find_element("id", "viewer-size").text
    with Image.open(path) as img:  # every generated cell is 400 x 400
        assert f"{img.width} × {img.height} px" in size and "original" in size
    href = page.find_element("id", "viewer-open").get_attribute("href")
    assert href.endswith(f"/api/cells/{quote(first, safe='')}/image")
    # looking at a cell does not start a search; the button does
    assert page.find_element("id", "cell-id").get_attribute("value") == cell_id
    page.find_element("id", "viewer-search").click()
    wait(page, lambda d: d.find_element("id", "cell-id").get_attribute("value") == first)
    wait(page, lambda d: len(grid_ids(d)) == 6 and first not in grid_ids(d))


def test_2_results_follow_the_query_on_screen(page, url: str, a_cell: tuple[str, Path]) -> None:
    _, path = a_cell
    set_k(page, 5)
    upload(page, path)
    wait(page, lambda d: len(grid_ids(d)) == 5)
    # a label filter changed after an upload re-runs the upload
    label = "LYT"
    expected = httpx.post(
        f"{url}/api/query?k=5&label={label}", files={"image": (path.name, path.read_bytes())}, timeout=60
    ).json()
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "label")).select_by_value(label)
    wait(page, lambda d: grid_ids(d) == [n["cell_id"] for n in expected["neighbours"]])
    # Search with an empty id box re-runs the kept upload (k changed)
    set_k(page, 3)
    page.find_element("css selector", "#cell-form button").click()
    wait(page, lambda d: len(grid_ids(d)) == 3)
    # an error leaves nothing of the previous answer on screen
    page.find_element("id", "cell-id").send_keys("no/such/cell.tiff\n")
    wait(page, lambda d: "error" in d.find_element("id", "status").get_attribute("class"))
    assert grid_ids(page) == []
    assert not shown(page, "query-view") and not shown(page, "summary") and not shown(page, "downloads")
    assert "no indexed cell" in page.find_element("id", "status").text


def test_3_an_indexed_cell_uploaded_is_named(page, a_cell: tuple[str, Path]) -> None:
    cell_id, path = a_cell
    label = cell_id.split("/")[-2]
    set_k(page, 8)
    upload(page, path)
    wait(page, lambda d: len(grid_ids(d)) == 8)
    banner = page.find_element("id", "exact-match").text
    assert cell_id in banner and label in banner
    answer = page.execute_script("return state.answer")
    same = page.find_elements("css selector", "#grid .tile.same")
    assert len(same) == sum(n["label"] == label for n in answer["neighbours"])


@pytest.mark.parametrize(("size", "code"), [((1, 1), "tiny_image"), ((1000, 3), "extreme_aspect")])
def test_4_nonsense_uploads_show_a_warning(page, tmp_path: Path, size: tuple[int, int], code: str) -> None:
    upload(page, image_file(tmp_path, size))
    wait(page, lambda d: shown(d, "warnings"))
    codes = [li.get_attribute("data-code") for li in page.find_elements("css selector", "#warnings li")]
    assert code in codes
    assert not shown(page, "exact-match")


def test_5_summary_names_and_downloads_hold_the_shown_neighbours(page, a_cell: tuple[str, Path]) -> None:
    cell_id, _ = a_cell
    info = page.execute_script("return state.info")
    assert info["example_cell"] in page.find_element("id", "cell-id").get_attribute("placeholder")
    set_k(page, 10)
    page.find_element("id", "cell-id").send_keys(cell_id + "\n")
    wait(page, lambda d: len(grid_ids(d)) == 10)
    answer = page.execute_script("return state.answer")
    counts = Counter(n["label"] for n in answer["neighbours"])
    chips = {
        c.get_attribute("data-label"): c.text for c in page.find_elements("css selector", "#summary .chip")
    }
    assert {k: int(v.removeprefix(k)) for k, v in chips.items()} == dict(counts)
    names = [e.text for e in page.find_elements("css selector", "#grid .tile .name")]
    for n, text in zip(answer["neighbours"], names, strict=True):
        assert text == (f"{n['label_name']} ({n['label']})" if n["label_name"] != n["label"] else n["label"])
    fetch = (
        "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done);"
    )
    csv = page.execute_async_script(fetch, page.find_element("id", "download-csv").get_attribute("href"))
    rows = [line.split(",") for line in csv.splitlines() if line and not line.startswith("#")]
    assert rows[0][:2] == ["rank", "cell_id"] and [r[1] for r in rows[1:]] == grid_ids(page)
    body = json.loads(
        page.execute_async_script(fetch, page.find_element("id", "download-json").get_attribute("href"))
    )
    assert [n["cell_id"] for n in body["neighbours"]] == grid_ids(page) and body["query"] == cell_id
    assert "/tmp" not in csv and "/tmp" not in json.dumps(body)  # no server path


def test_6_the_map_is_usable(page, a_cell: tuple[str, Path]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    assert not shown(page, "query-view")  # no broken image on the start page
    canvas = page.find_element("id", "map")
    assert canvas.size["width"] >= 400
    legend_bottom = page.execute_script(
        "return document.getElementById('map-legend').getBoundingClientRect().bottom"
    )
    assert legend_bottom <= page.execute_script("return window.innerHeight")
    # hover over a point names it
    page.execute_script(
        "const m = state.map; m.canvas.scrollIntoView(); const r = m.canvas.getBoundingClientRect();"
        "const [x, y] = m.toScreen(m.ux[0], m.uy[0]);"
        "m.canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + x / m.scale,"
        " clientY: r.top + y / m.scale, bubbles: true}));"
    )
    wait(page, lambda d: shown(d, "map-tip"))
    assert page.execute_script("return state.map.data.cell_id[0]") in page.find_element("id", "map-tip").text
    # the wheel zooms
    page.execute_script(
        "arguments[0].dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: 50, clientY: 50, bubbles: true}))",
        canvas,
    )
    assert page.execute_script("return state.map.view.zoom") > 1
    # a click far from every point searches nothing
    page.execute_script("state.map.view = {zoom: 1, cx: 5, cy: 5}; state.map.draw();")
    ActionChains(page).move_to_element(canvas).click().perform()
    assert page.find_element("id", "cell-id").get_attribute("value") == ""
    assert grid_ids(page) == []
    # an upload has a place on the map
    page.execute_script("state.map.view = {zoom: 1, cx: 0.5, cy: 0.5}; state.map.draw();")
    _, path = a_cell
    img = Image.open(path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    flipped = Path(tempfile.mkdtemp()) / "flipped.png"
    img.save(flipped)
    upload(page, flipped)
    wait(page, lambda d: len(grid_ids(d)) > 0)
    placement = page.execute_script("return state.answer.map")
    assert placement["placed"] == "neighbours" and len(placement["query"]) == 2


def test_8_huge_headers_tiff_previews_and_large_k(page, tmp_path: Path, a_cell: tuple[str, Path]) -> None:
    big = tmp_path / "big.tiff"
    big.write_bytes(tiff_declaring(20_000, 20_000))
    upload(page, big)
    wait(page, lambda d: "error" in d.find_element("id", "status").get_attribute("class"))
    assert "--max-pixels" in page.find_element("id", "status").text
    # a TIFF upload shows a preview
    _, path = a_cell
    upload(page, path)
    wait(page, lambda d: len(grid_ids(d)) > 0)
    wait(
        page,
        lambda d: d.execute_script(
            "const i = document.getElementById('query-img'); return i.complete && i.naturalWidth > 0"
        ),
    )
    assert shown(page, "query-img")
    # a large k is paged
    set_k(page, 1000)
    page.find_element("id", "label").click()  # blur k: its change re-runs the upload
    wait(page, lambda d: shown(d, "pager"))
    n = len(page.execute_script("return state.answer.neighbours"))
    assert n > 48 and len(grid_ids(page)) == 48
    page.find_element("id", "next").click()
    wait(page, lambda d: len(grid_ids(d)) == min(48, n - 48))
