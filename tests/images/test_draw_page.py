"""The draw-a-digit page in a real headless Chromium (Debian's), driven by Playwright."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
KEY = "page-test-key"  # the key `keyed_server` starts with (conftest.API_KEY)

# Strokes in canvas fractions (x, y), one list per pen-down; shapes anyone would read as the digit.
SHAPES = {
    "1": [[(0.52, 0.15), (0.48, 0.85)]],
    "7": [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
    "4": [[(0.35, 0.15), (0.25, 0.55), (0.75, 0.55)], [(0.6, 0.3), (0.6, 0.85)]],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), (
        f"{CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium), "
        "as `make test` does"
    )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any, server: Any) -> Iterator[Any]:
    """A fresh page on the server, with every request it makes recorded in `page.seen_urls`."""
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    pg = context.new_page()
    pg.seen_urls = []
    pg.on("request", lambda request: pg.seen_urls.append(request.url))
    pg.goto(server.url + "/")
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()


def _draw(pg: Any, strokes: list[list[tuple[float, float]]]) -> None:
    box = pg.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        pg.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        pg.mouse.down()
        for x, y in stroke[1:]:
            pg.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
        pg.mouse.up()


def _draw_with_finger(pg: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Touch events through the DevTools protocol: Chromium turns them into touch pointer events."""
    cdp = pg.context.new_cdp_session(pg)
    box = pg.locator("#pad").bounding_box()

    def touch(kind: str, x: float, y: float) -> None:
        points = (
            []
            if kind == "touchEnd"
            else [{"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]}]
        )
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    for stroke in strokes:
        touch("touchStart", *stroke[0])
        for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
            for t in np.linspace(0.125, 1.0, 8):
                touch("touchMove", x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        touch("touchEnd", 0, 0)
    # Touch input is delivered asynchronously: wait until the page has seen every stroke end,
    # or the next tap joins the last stroke as a second finger and gives no click.
    pg.wait_for_selector(f"#pad[data-strokes='{len(strokes)}']")


def _answer(pg: Any, n: int) -> dict[str, Any]:
    """Wait for the page's n-th answer; read the label and the bar chart from the DOM."""
    pg.wait_for_selector(f"body[data-answers='{n}']")
    bars = pg.locator("#chart .bar")
    chart = {
        bars.nth(i).get_attribute("data-label"): float(
            bars.nth(i).get_attribute("data-probability")
        )
        for i in range(bars.count())
    }
    return {
        "label": pg.text_content("#label"),
        "error": pg.text_content("#error") if pg.is_visible("#error") else "",
        "chart": chart,
        "top": pg.get_attribute("#chart .bar.top", "data-label"),
        "seen": pg.get_attribute("#seen", "src") or "",
    }


def test_draw_digits_with_the_mouse(page: Any, server: Any) -> None:
    for n, (digit, strokes) in enumerate(SHAPES.items(), start=1):
        page.click("#clear")
        _draw(page, strokes)
        page.click("#classify")
        answer = _answer(page, n)
        assert not answer["error"], answer["error"]
        assert answer["label"] == digit, f"drew a {digit}, the page says {answer['label']}"
        chart = answer["chart"]
        assert sorted(chart) == [str(i) for i in range(10)], f"bars {sorted(chart)}"
        total = sum(chart.values())
        assert abs(total - 1.0) < 1e-3, f"the ten bars sum to {total:.4f}"
        assert answer["top"] == digit == max(chart, key=chart.__getitem__)
        assert chart[digit] > 0.5, f"{digit} drawn clearly, probability only {chart[digit]:.2f}"
        assert answer["seen"].startswith("data:image/png;base64,"), "the 28x28 input is shown"
        if digit == "4":
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "page-drawn-4.png"), full_page=True)
    # The page fetched only its own files: no request left the server.
    foreign = [u for u in page.seen_urls if not u.startswith((server.url, "data:", "blob:"))]
    assert not foreign, f"the page requested other sites: {foreign}"


def test_upload_png_files(page: Any, digits: Any, tmp_path: Path) -> None:
    # Two real test digits the model reads correctly when fed directly.
    picks = [int(i) for i in np.flatnonzero(digits.direct == digits.y)[:2]]
    files = []
    for i in picks:
        dest = tmp_path / f"digit-{i}.png"
        shutil.copy(digits.folders[(300, 200)] / f"{i:05d}.png", dest)
        files.append(dest)
    page.set_input_files("#file", str(files[0]))
    answer = _answer(page, 1)
    assert answer["label"] == str(digits.y[picks[0]]), answer
    page.set_input_files("#file", [str(f) for f in files])
    answer = _answer(page, 2)
    items = page.locator("#files li").all_text_contents()
    assert [item.split(":")[0] for item in items] == [f.name for f in files], items
    assert [item.split(": ")[1][0] for item in items] == [str(digits.y[i]) for i in picks]
    page.set_input_files("#file", str(Path(__file__)))  # not an image: the error is shown
    answer = _answer(page, 3)
    assert "not an image" in answer["error"], answer["error"]


def test_phone_layout(browser: Any, server: Any) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True
    )
    pg = context.new_page()
    pg.goto(server.url + "/")
    pg.wait_for_selector("body[data-ready='1']")
    for selector in ("#pad", "#classify", "#drop", "#chart"):
        box = pg.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
            f"{selector} at {box} does not fit a 390-pixel-wide phone screen"
        )
    pad = pg.locator("#pad").bounding_box()
    assert pad["width"] >= 250, f"the drawing pad is only {pad['width']:.0f}px wide on a phone"
    _draw_with_finger(pg, SHAPES["7"])
    # Synthetic taps right after a synthetic drag get no click in headless Chromium (a gesture
    # detector quirk); the finger part under test is the drawing, so the button is clicked.
    pg.click("#classify")
    answer = _answer(pg, 1)
    assert answer["label"] == "7", f"a 7 drawn with a finger read as {answer['label']}"
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
    context.close()


def test_page_asks_for_the_api_key(browser: Any, keyed_server: Any) -> None:
    # The page itself is public; its API calls get 401 until the user types the key once.
    import httpx

    assert httpx.get(keyed_server.url + "/").status_code == 200
    assert httpx.get(keyed_server.url + "/v1/models").status_code == 401
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    pg = context.new_page()
    prompts: list[str] = []

    def answer(dialog: Any) -> None:
        prompts.append(dialog.message)
        dialog.accept(KEY)

    pg.on("dialog", answer)
    pg.goto(keyed_server.url + "/")
    pg.wait_for_selector("body[data-ready='1']")
    _draw(pg, SHAPES["1"])
    pg.click("#classify")
    result = _answer(pg, 1)
    assert not result["error"], result["error"]
    assert result["label"] == "1", f"drew a 1, the page says {result['label']}"
    assert prompts == ["This server needs an API key:"], f"prompted {prompts}"
    context.close()
