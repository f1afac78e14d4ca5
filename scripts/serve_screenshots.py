"""Screenshots of the ``ssl-cyto serve`` page for the README (headless Debian Chromium + selenium).

Starts ``ssl-cyto serve --index EMB_DIR`` on a free loopback port and saves one screenshot per view::

    OUT/serve_start.png      the start page (map with its legend, nothing queried yet)
    OUT/serve_upload.png     an upload that is not an indexed cell (a mirrored copy of one): summary bar,
                             similarity scale, downloads, its place on the map
    OUT/serve_exact.png      an indexed cell's own file uploaded: named, tiles framed against its label
    OUT/serve_viewer.png     a neighbour opened at full resolution (pixel size, origin, buttons)
    OUT/serve_neighbour.png  after "search from this cell"
    OUT/serve_filter.png     the same query re-run by choosing a label filter
    OUT/serve_warning.png    a 1x1 px upload: its warnings
    OUT/serve_error.png      an unknown cell id: the error, nothing of the previous answer
    OUT/serve_map.png        the map zoomed in, a hover label shown

Usage::

    python scripts/serve_screenshots.py --index EMB_DIR [--image CELL_FILE] [--out results/serve]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
from PIL import Image, ImageOps
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def server(emb: Path, threads: int) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "ssl_cyto",
        "serve",
        "--index",
        str(emb),
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with status {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def browser(profile: str, width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_images(driver: webdriver.Chrome) -> None:
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return [...document.images].every(i => i.hidden || i.complete)")
    )
    time.sleep(0.3)


def grid(driver: webdriver.Chrome) -> list[str]:
    return [str(t.get_attribute("data-cell-id")) for t in driver.find_elements("css selector", "#grid .tile")]


def shot(driver: webdriver.Chrome, out: Path, name: str) -> None:
    wait_images(driver)
    driver.save_screenshot(str(out / name))
    print(out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, type=Path, help="embedding folder with index.faiss")
    parser.add_argument("--out", type=Path, default=Path("results/serve"))
    parser.add_argument("-k", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="1400x1000", help="window WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    cells = pd.read_parquet(args.index / "cells.parquet", columns=["cell_id", "root", "path"])
    row = cells.iloc[len(cells) // 3]
    image = Path(row["root"]) / row["path"]
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        server(args.index, args.threads) as url,
        tempfile.TemporaryDirectory() as profile,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mirrored, tiny = Path(tmp) / "mirrored.png", Path(tmp) / "tiny.png"
        ImageOps.mirror(Image.open(image).convert("RGB")).save(mirrored)
        Image.new("RGB", (1, 1), (240, 180, 200)).save(tiny)
        driver = browser(profile, width, height)
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(url + "/")
            wait.until(lambda d: d.find_element("id", "info").text not in ("", "loading…"))
            wait.until(lambda d: d.execute_script("return state.map !== null"))
            shot(driver, args.out, "serve_start.png")
            box = driver.find_element("id", "k")
            box.clear()
            box.send_keys(str(args.k))
            driver.find_element("id", "file").send_keys(str(mirrored))
            wait.until(lambda d: len(grid(d)) == args.k)
            shot(driver, args.out, "serve_upload.png")

            driver.find_element("id", "file").send_keys(str(image.resolve()))
            wait.until(lambda d: d.find_element("id", "exact-match").is_displayed())
            shot(driver, args.out, "serve_exact.png")

            driver.find_elements("css selector", "#grid .tile .view")[2].click()
            wait.until(lambda d: "px" in d.find_element("id", "viewer-size").text)
            shot(driver, args.out, "serve_viewer.png")

            before = grid(driver)
            driver.find_element("id", "viewer-search").click()
            wait.until(lambda d: grid(d) != before and len(grid(d)) > 0)
            shot(driver, args.out, "serve_neighbour.png")

            before = grid(driver)
            select = Select(driver.find_element("id", "label"))
            select.select_by_index(min(3, len(select.options) - 1))
            wait.until(lambda d: grid(d) != before and len(grid(d)) > 0)
            shot(driver, args.out, "serve_filter.png")
            select.select_by_index(0)

            driver.find_element("id", "file").send_keys(str(tiny))
            wait.until(lambda d: d.find_element("id", "warnings").is_displayed())
            shot(driver, args.out, "serve_warning.png")

            driver.find_element("id", "cell-id").send_keys("pbc/no/such/cell.jpg\n")
            wait.until(lambda d: "error" in str(d.find_element("id", "status").get_attribute("class")))
            shot(driver, args.out, "serve_error.png")

            driver.execute_script(
                "const m = state.map; m.view = {zoom: 4, cx: m.ux[0], cy: m.uy[0]}; m.draw();"
                "const r = m.canvas.getBoundingClientRect(); const [x, y] = m.toScreen(m.ux[0], m.uy[0]);"
                "m.canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + x / m.scale,"
                " clientY: r.top + y / m.scale, bubbles: true}));"
            )
            wait.until(lambda d: d.find_element("id", "map-tip").is_displayed())
            driver.save_screenshot(str(args.out / "serve_map.png"))
            print(args.out / "serve_map.png")
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
