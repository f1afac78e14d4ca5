"""Screenshots of the ``ssl-cyto serve`` page for the README (headless Debian Chromium + selenium).

Starts ``ssl-cyto serve --index EMB_DIR`` on a free loopback port, uploads one cell image, clicks a
neighbour, applies a label filter, and saves::

    OUT/serve_upload.png     the grid after an upload (same-label marks, legend, the map)
    OUT/serve_neighbour.png  after clicking a neighbour (query cell highlighted on the map)
    OUT/serve_filter.png     the same query restricted to one label

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
    return [t.get_attribute("data-cell-id") for t in driver.find_elements("css selector", "#grid .tile")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, type=Path, help="embedding folder with index.faiss")
    parser.add_argument("--image", type=Path, help="cell image to upload (default: an indexed cell's file)")
    parser.add_argument("--out", type=Path, default=Path("results/serve"))
    parser.add_argument("-k", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="1400x1250", help="window WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    image = args.image
    if image is None:
        cells = pd.read_parquet(args.index / "cells.parquet", columns=["root", "path"])
        image = Path(cells["root"].iloc[len(cells) // 3]) / cells["path"].iloc[len(cells) // 3]
    args.out.mkdir(parents=True, exist_ok=True)
    with server(args.index, args.threads) as url, tempfile.TemporaryDirectory() as profile:
        driver = browser(profile, width, height)
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(url + "/")
            wait.until(lambda d: d.find_element("id", "info").text not in ("", "loading…"))
            box = driver.find_element("id", "k")
            box.clear()
            box.send_keys(str(args.k))
            driver.find_element("id", "file").send_keys(str(image.resolve()))
            wait.until(lambda d: len(grid(d)) == args.k)
            wait_images(driver)
            driver.save_screenshot(str(args.out / "serve_upload.png"))

            before = grid(driver)
            driver.find_elements("css selector", "#grid .tile")[2].click()
            wait.until(lambda d: grid(d) != before and len(grid(d)) > 0)
            wait_images(driver)
            driver.save_screenshot(str(args.out / "serve_neighbour.png"))

            before = grid(driver)
            select = Select(driver.find_element("id", "label"))
            select.select_by_index(min(3, len(select.options) - 1))
            driver.find_element("css selector", "#cell-form button").click()
            wait.until(lambda d: grid(d) != before and len(grid(d)) > 0)
            wait_images(driver)
            driver.save_screenshot(str(args.out / "serve_filter.png"))
        finally:
            driver.quit()
    for name in ("serve_upload.png", "serve_neighbour.png", "serve_filter.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
