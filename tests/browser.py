"""A page as a real browser lays it out: a local HTML file opened in the system's headless Chromium.

Playwright drives the Chromium that ``.ci/run`` installs (``executable_path``): no browser is
downloaded. ``Browser.open`` loads the file at a viewport width and returns what layout checks need:
the box of every element each CSS selector matches (``getBoundingClientRect``, CSS pixels, with the
element's text), the document's scroll width, whatever the page tried to fetch besides itself (blocked),
whether it holds any script, and a PNG screenshot of the whole page.

    with browser() as b:
        page = b.open(path, ["svg.hist", "svg.hist text"], width=800)

Tests that use it are marked ``needs_browser`` (or check ``AVAILABLE``): they skip where Chromium or
Playwright is missing.
"""
from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

#: whether this machine can run the checks here (else tests marked ``needs_browser`` skip)
AVAILABLE = CHROMIUM is not None and _PLAYWRIGHT
needs_browser = pytest.mark.skipif(
    not AVAILABLE,
    reason="needs Chromium (apt-get install chromium) and Playwright (pip install -e '.[test]')")

# Every element's box and text, for each selector; run in the page, which needs no script of its own.
_MEASURE = """selectors => Object.fromEntries(selectors.map(s => [s, [...document.querySelectorAll(s)].map(e => {
    const r = e.getBoundingClientRect();
    return {left: r.left + window.scrollX, top: r.top + window.scrollY, width: r.width, height: r.height,
            text: e.textContent};
})]))"""
# Scripts in any form: <script>, an on* handler attribute, a javascript: URL.
_SCRIPTS = """() => document.scripts.length + [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(
    a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value))).length"""


@dataclass(frozen=True)
class Box:
    """An element's box in the document (CSS pixels; ``left``/``top`` from the document's origin) and its text."""

    left: float
    top: float
    width: float
    height: float
    text: str

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def inside(self, other: "Box", slack: float = 0.5) -> bool:
        """Whether this box lies within ``other`` (``slack`` pixels of rounding allowed)."""
        return (self.left >= other.left - slack and self.top >= other.top - slack
                and self.right <= other.right + slack and self.bottom <= other.bottom + slack)


@dataclass(frozen=True)
class Page:
    """A loaded page as laid out at ``width`` CSS pixels."""

    width: int
    #: selector -> the boxes of the elements it matches, in document order
    boxes: dict[str, tuple[Box, ...]]
    #: the document's full width (``scrollWidth``): above ``client_width`` when something overflows sideways
    scroll_width: int
    client_width: int
    #: how many scripts the page holds (elements, handler attributes, javascript: URLs)
    scripts: int
    #: every URL the page asked for besides itself (each one blocked)
    fetched: tuple[str, ...]
    #: a screenshot of the whole page (PNG, one device pixel per CSS pixel; empty when not asked for)
    png: bytes = field(repr=False)


class Browser:
    """One headless Chromium and one tab, for as many pages as a test module opens (start it with ``browser()``).
    Every request the tab makes besides the page it was sent to is blocked, and recorded."""

    def __init__(self, chromium) -> None:
        self._context = chromium.new_context(device_scale_factor=1)
        self._url = ""
        self._fetched: list[str] = []
        self._context.route("**/*", self._only_the_page)
        self._tab = self._context.new_page()

    def _only_the_page(self, route) -> None:
        if route.request.url == self._url:
            route.continue_()
        else:
            self._fetched.append(route.request.url)
            route.abort()

    def open(self, path: Path, selectors: Sequence[str] = (), width: int = 1280, height: int = 800,
             screenshot: bool = True) -> Page:
        """Load ``path`` in a window ``width`` x ``height`` CSS pixels wide, then measure it (and take a
        screenshot of the whole page, unless ``screenshot`` is False: ``png`` is then empty)."""
        self._url, self._fetched = Path(path).resolve().as_uri(), []
        tab = self._tab
        tab.set_viewport_size({"width": width, "height": height})
        tab.goto(self._url, wait_until="load")
        boxes = tab.evaluate(_MEASURE, list(selectors))
        scroll, client = tab.evaluate("() => [document.documentElement.scrollWidth, "
                                      "document.documentElement.clientWidth]")
        return Page(width, {s: tuple(Box(**b) for b in found) for s, found in boxes.items()}, scroll, client,
                    tab.evaluate(_SCRIPTS), tuple(self._fetched),
                    tab.screenshot(full_page=True) if screenshot else b"")


@contextmanager
def browser() -> Iterator[Browser]:
    """The system's Chromium, headless, driven by Playwright; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield Browser(chromium)
        finally:
            chromium.close()
