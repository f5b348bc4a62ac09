"""Headless Chromium for the playground tests: Debian's ``chromium`` driven by Playwright (never
``playwright install``), plus helpers that act on the playground page like a person would.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import png_bytes
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parent.parent / "docs"
KEY_STORAGE = "stillreel.apiKey"
W, H = 640, 360  # the generated input image


@pytest.fixture(scope="module")
def browser():
    """One Chromium for a test module (contexts keep the tests apart)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"the playground tests need Debian's chromium at {CHROMIUM} (make system-deps)"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, server, *, key: bool = True, phone: bool = False):
    """A fresh browser context (own localStorage); ``key`` stores the server's key as if typed once."""
    options = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
               "has_touch": True} if phone else {"viewport": {"width": 1280, "height": 900}}
    context = browser.new_context(**options)
    if key and server.key:
        context.add_init_script(f"localStorage.setItem({KEY_STORAGE!r}, {server.key!r})")
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    # CSP violations are console errors, not page errors; they would mean something is blocked.
    page.on("console", lambda m: "Content Security Policy" in m.text and page.errors.append(m.text))
    return page


def image_file(width: int = W, height: int = H) -> dict:
    return {"name": "input.png", "mimeType": "image/png", "buffer": png_bytes(width, height)}


def upload_image(page, field: str = "image_url") -> str:
    page.set_input_files(f'[data-field="{field}"] input[type=file]', image_file())
    page.wait_for_selector(f'[data-field="{field}"] .image-status:has-text("Uploaded")')
    return page.input_value(f"#field-{field}")


def drop_image(page, field: str = "image_url") -> str:
    """Drag and drop a file onto the image field (a real DataTransfer with a File in it)."""
    page.wait_for_selector(f'[data-field="{field}"] .image-drop')  # the form is built after fetches
    page.evaluate("""([selector, b64]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
      const zone = document.querySelector(selector);
      for (const type of ['dragenter', 'dragover', 'drop'])
        zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", [f'[data-field="{field}"] .image-drop', base64.b64encode(png_bytes(W, H)).decode()])
    page.wait_for_selector(f'[data-field="{field}"] .image-status:has-text("Uploaded dropped.png")')
    return page.input_value(f"#field-{field}")


def wait_finished(page, timeout_s: float = 120) -> str:
    page.wait_for_function(
        "() => ['done', 'failed', 'cancelled'].includes(document.querySelector('.run-panel')?.dataset.state)",
        timeout=timeout_s * 1000)
    return page.eval_on_selector(".run-panel", "el => el.dataset.state")


def fetch_png(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url, timeout=30).raise_for_status().content)).convert("L"))


def screenshot(page, name: str) -> None:
    if os.environ.get("STILLREEL_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / name))


def same_origin_only(page, server) -> list[str]:
    return [u for u in page.requested if not u.startswith((server.url, "data:", "blob:"))]


# A frame of the result video, drawn to a canvas: its readyState, luminance stats, a small grey copy.
FRAME_JS = """async (t) => {
  const v = document.querySelector('video.result-video');
  v.pause();
  await new Promise((resolve) => { v.addEventListener('seeked', resolve, {once: true}); v.currentTime = t; });
  const c = document.createElement('canvas'); c.width = 160; c.height = 90;
  const ctx = c.getContext('2d'); ctx.drawImage(v, 0, 0, 160, 90);
  const d = ctx.getImageData(0, 0, 160, 90).data;
  const grey = [];
  for (let i = 0; i < d.length; i += 4) grey.push(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
  return {readyState: v.readyState, grey, duration: v.duration};
}"""

# Records every progress value and every log line with the panel state at that moment.
WATCH_JS = """() => {
  const panel = document.querySelector('.run-panel');
  const bar = panel.querySelector('.progress');
  window.__seen = {progress: [], logs: []};
  new MutationObserver(() => window.__seen.progress.push(Number(bar.getAttribute('aria-valuenow'))))
    .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) window.__seen.logs.push(panel.dataset.state);
  }).observe(panel.querySelector('.logs'), {childList: true});
}"""
