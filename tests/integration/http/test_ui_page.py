"""The demo page at /ui and the API reference at /, driven in a real headless Chromium against the real server.

A photo goes in through the page's file input; the page must draw the detector's boxes with labels and scores,
list the top-5 classes and show the most similar gallery images. ``UPDATE_SCREENSHOTS=1`` writes the
screenshots to docs/images/ (the ones the README shows); otherwise they go to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from services.index.build_gallery import thumbnail
from tests.integration.server import Server

pytestmark = pytest.mark.integration

DOCS_IMAGES = Path(__file__).resolve().parents[3] / "docs" / "images"
# Debian's chromium here; a GitHub runner's Google Chrome there.
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("TEST_REQUIRE_SERVERS"):
            pytest.fail("chromium and chromedriver are required (Debian packages chromium, chromium-driver)")
        pytest.skip("chromium / chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot_dir(tmp_path: Path) -> Path:
    return DOCS_IMAGES if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


@pytest.fixture(scope="module")
def gallery(server: Server, photos: dict[str, bytes]) -> Iterator[list[str]]:
    """Two photos in the server's gallery, with thumbnails as the demo gallery keeps them."""
    ids = []
    for name in ("coffee.jpg", "rocket.jpg"):
        import io

        pixels = np.asarray(Image.open(io.BytesIO(photos[name])).convert("RGB"))
        meta = {"label": name.split(".")[0], "thumbnail": thumbnail(pixels)}
        answer = httpx.post(
            f"{server.url}/api/v1/gallery",
            files={"image": (name, photos[name], "image/jpeg")},
            data={"metadata": json.dumps(meta)},
            timeout=60,
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    yield ids
    for item in ids:
        httpx.delete(f"{server.url}/api/v1/gallery/{item}", timeout=30)


def test_demo_page_shows_boxes_classes_and_similar_images(
    server: Server, browser: object, gallery: list[str], photos: dict[str, bytes], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # a selenium WebDriver
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(photos["astronaut.png"])
    driver.get(f"{server.url}/ui")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "file").send_keys(str(photo))  # type: ignore[attr-defined]
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text  # type: ignore[attr-defined]
    boxes = driver.find_elements(By.CSS_SELECTOR, "#boxes .box")  # type: ignore[attr-defined]
    assert boxes, "no box drawn"
    assert any(b.get_attribute("data-label") == "person" for b in boxes)
    assert all(b.size["width"] > 0 and b.size["height"] > 0 for b in boxes)
    assert "person" in driver.find_element(By.ID, "detections").text  # type: ignore[attr-defined]
    classes = driver.find_elements(By.CSS_SELECTOR, "#classes li")  # type: ignore[attr-defined]
    assert len(classes) == 5 and all("%" in c.text for c in classes)
    hits = driver.find_elements(By.CSS_SELECTOR, "#similar figure")  # type: ignore[attr-defined]
    assert len(hits) == 2 and {h.text.split()[0] for h in hits} == {"coffee", "rocket"}
    WebDriverWait(driver, 10).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#similar img")))
    assert "classifier v" in driver.find_element(By.ID, "classify-meta").text  # type: ignore[attr-defined]
    driver.save_screenshot(str(_screenshot_dir(tmp_path) / "ui.png"))  # type: ignore[attr-defined]


def test_demo_page_shows_a_problem_as_a_readable_message(server: Server, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    driver.get(f"{server.url}/ui")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "file").send_keys(str(broken))  # type: ignore[attr-defined]
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    error = driver.find_element(By.ID, "error")  # type: ignore[attr-defined]
    assert error.is_displayed()
    assert "Invalid image" in error.text and "request " in error.text


def test_api_reference_page_renders_this_apis_routes(server: Server, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(f"{server.url}/")  # type: ignore[attr-defined]
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}  # type: ignore[attr-defined]
    assert "/classify" in paths and "/detect" in paths
    assert "Computer-vision API" in driver.find_element(By.CSS_SELECTOR, ".info .title").text  # type: ignore[attr-defined]
    assert driver.find_elements(By.CSS_SELECTOR, ".btn.authorize")  # type: ignore[attr-defined]
    driver.save_screenshot(str(_screenshot_dir(tmp_path) / "openapi-ui.png"))  # type: ignore[attr-defined]
