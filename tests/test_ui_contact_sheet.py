"""The scout contact sheet really shows in the Prefect UI: the artifact the run writes (a markdown
image with a ``data:image/png`` URL), put on a real ``prefect server start`` and opened in Debian's
chromium, is drawn as an image of the sheet's own size in both of the server's UIs. The run that
writes it is in test_contact_sheet.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.transfers.contact_sheet import make_contact_sheet
from prefect_conductor.tasks.contact_sheet import ARTIFACT_KEY, sheet_markdown
from tests.test_contact_sheet import frames, png_size
from tests.test_ui_form import CHROMIUM_ARGS

pytestmark = pytest.mark.e2e

DRAWN = """() => Array.from(document.images)
    .filter(i => i.src.startsWith("data:image/png;base64,"))
    .map(i => [i.alt, i.complete ? i.naturalWidth : -1, i.getBoundingClientRect().width])"""
"""Each inline PNG on the page: its alt text, its decoded width and its drawn width."""


def test_the_contact_sheet_artifact_shows_as_an_image_in_the_prefect_ui(
    chromium: Path, prefect_server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    sheet = make_contact_sheet(frames(tmp_path / "job"))
    width, _ = png_size(sheet.png, tmp_path)
    answer = httpx.post(
        f"{prefect_server}/artifacts/",
        json={"key": ARTIFACT_KEY, "type": "markdown", "data": sheet_markdown("00042", sheet)},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    artifact = answer.json()["id"]
    ui = prefect_server.removesuffix("/api")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            for address in (
                f"{ui}/artifacts/artifact/{artifact}",
                f"{ui}/v2/artifacts/artifact/{artifact}",
            ):
                page.goto(address)
                try:
                    page.wait_for_function(f"({DRAWN})().some(i => i[1] > 0)", timeout=90_000)
                except Exception:
                    shot = tmp_path / "artifact.png"
                    page.screenshot(path=str(shot), full_page=True)
                    raise AssertionError(
                        f"no contact sheet drawn at {address}; screenshot {shot}:\n"
                        + page.locator("body").inner_text()[:2000]
                    ) from None
                ((alt, decoded, drawn),) = page.evaluate(DRAWN)
                assert (alt, decoded) == ("Scout frames of job 00042", width), address
                assert drawn > 0, address
                assert "shadow/shadow.0009.exr" in page.locator("body").inner_text()
        finally:
            browser.close()
