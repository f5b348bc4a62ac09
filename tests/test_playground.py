"""The playground in a real browser: Debian's headless Chromium driven by Playwright, against a live
``stillreel serve`` on loopback.

One server for the module, with auth and the real CPU motion engine for the Kling 1.0 Standard and
2.0 Master endpoints. Two endpoints are bound (``--config``) to ``tests/engines.py:StepEngine``, the
test engine steered by its prompt, where a test needs a request that runs until it is cancelled,
fails on purpose, or should cost nothing: 2.5 Turbo Standard and O3 Standard.

``STILLREEL_UPDATE_SCREENSHOTS=1`` also writes the screenshots kept under ``docs/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser import (FRAME_JS, KEY_STORAGE, WATCH_JS, H, W, browser, drop_image, fetch_png, image_file,  # noqa: F401
                     new_page, same_origin_only, screenshot, upload_image, wait_finished)
from live_server import LiveServer, png_bytes
from playwright.sync_api import expect

V1 = "fal-ai/kling-video/v1/standard/image-to-video"
V2 = "fal-ai/kling-video/v2/master/image-to-video"
TURBO = "fal-ai/kling-video/v2.5-turbo/standard/image-to-video"  # StepEngine
O3 = "fal-ai/kling-video/o3/standard/image-to-video"  # StepEngine
# One page of each new kind, and v2.6's voices. Bound to StepEngine, which honours none of text to
# video, elements, reference images, voices or audio: their submit is answered with a 422 made only
# of feature_not_supported items, which proves the page's JSON passed fal's schema and rules, and
# nothing runs for minutes on the CPU.
T2V = "fal-ai/kling-video/v3/standard/text-to-video"
R2V = "fal-ai/kling-video/o1/reference-to-video"
ELEMENTS = "fal-ai/kling-video/v1.6/standard/elements"
V26 = "fal-ai/kling-video/v2.6/pro/image-to-video"
REFUSING = (T2V, R2V, ELEMENTS, V26)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("playground")
    config = data / "stillreel.toml"
    config.write_text(textwrap.dedent(f"""
        [endpoints."{TURBO}"]
        name = "engines:StepEngine"
        [endpoints."{O3}"]
        name = "engines:StepEngine"
    """) + "".join(f'[endpoints."{e}"]\nname = "engines:StepEngine"\n' for e in REFUSING))
    with LiveServer.start(data / "srv", auth=True, args=["--config", str(config)]) as srv:
        yield srv


@pytest.fixture
def page(browser, server):
    page = new_page(browser, server)
    yield page
    assert page.errors == [], page.errors
    page.context.close()


def history_item(server, request_id: str) -> dict:
    with server.http() as http:
        items = http.get("/api/requests", params={"limit": 50}).raise_for_status().json()
    return next(item for item in items if item["request_id"] == request_id)


# --- the routes, without a browser ----------------------------------------------------------


def test_pages_and_assets_are_served_with_types_and_cache_headers(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        home = http.get("/")
        assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
        assert home.headers["cache-control"] == "no-cache"
        assert "default-src 'self'" in home.headers["content-security-policy"]
        assert http.head("/").status_code == 200
        page = http.get(f"/models/{V1}")
        assert page.status_code == 200 and "Kling 1.0 Standard" in page.text
        assert http.get("/models/fal-ai/nope/image-to-video").status_code == 404

        # The shell links its assets under /static/<build>/: cacheable forever.
        build_prefix = page.text.split('src="', 1)[1].split("/app.js", 1)[0]
        assert build_prefix.startswith("/static/") and build_prefix.count("/") == 2
        app_js = http.get(f"{build_prefix}/app.js")
        assert app_js.status_code == 200 and app_js.headers["content-type"].startswith("text/javascript")
        assert "immutable" in app_js.headers["cache-control"]
        css = http.get(f"{build_prefix}/style.css")
        assert css.headers["content-type"].startswith("text/css")
        # Unversioned paths revalidate with an ETag.
        plain = http.get("/static/app.js")
        assert plain.headers["cache-control"] == "no-cache" and plain.content == app_js.content
        again = http.get("/static/app.js", headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        # Nothing outside stillreel/web is reachable.
        for probe in ("/static/../api/playground.py", "/static/%2e%2e/%2e%2e/pyproject.toml", "/static/nope.js"):
            assert http.get(probe).status_code == 404, probe


# --- in the browser -------------------------------------------------------------------------


def test_endpoint_list_links_every_endpoint_and_loads_nothing_from_elsewhere(page, server):
    page.goto(server.url + "/")
    page.wait_for_selector(".card")
    with server.http() as http:
        endpoints = http.get("/api/endpoints").raise_for_status().json()
    cards = page.locator(".card")
    assert cards.count() == len(endpoints) == 45  # the whole Kling family
    for e in endpoints:
        card = page.locator(f'.card[data-endpoint="{e["id"]}"]')
        assert card.get_attribute("href") == f"/models/{e['id']}"
        text = card.inner_text()
        assert e["id"] in text and e["description"] in text and e["price"]["text"] in text
    # The brush is offered where the schema has it, struck through nowhere (the motion engine honours it).
    assert "motion brush" in page.locator(f'.card[data-endpoint="{V1}"] .tags').inner_text()
    assert "motion brush" not in page.locator(f'.card[data-endpoint="{V2}"] .tags').inner_text()
    page.locator(f'.card[data-endpoint="{V2}"]').click()
    page.wait_for_selector("#field-prompt")
    assert page.url == f"{server.url}/models/{V2}"
    assert same_origin_only(page, server) == []


def test_openapi_documents_carry_fals_price(server):
    """info.x-fal-pricing: fal's price where fal publishes it (fal-protocol.md §14.2), else published: false."""
    def pricing(endpoint_id):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            doc = http.get("/api/openapi/queue/openapi.json", params={"endpoint_id": endpoint_id}).raise_for_status().json()
        return doc["info"]["x-fal-pricing"]

    assert pricing(V1) == {"published": True, "currency": "USD", "unit": "video_second", "unit_price": 0.045,
                           "per_clip_5s": 0.225, "text": "$0.045 per second"}
    v21_pro = pricing("fal-ai/kling-video/v2.1/pro/image-to-video")
    assert (v21_pro["unit"], v21_pro["unit_price"], v21_pro["per_extra_second"]) == ("clip_5s", 0.49, 0.098)
    assert pricing("fal-ai/kling-video/v2/master/text-to-video")["unit_price"] == 1.40
    v3 = pricing("fal-ai/kling-video/v3/standard/image-to-video")
    assert (v3["unit_price"], v3["audio_per_second"], v3["voice_per_second"]) == (0.084, 0.126, 0.154)
    assert pricing("fal-ai/kling-video/v3/turbo/standard/image-to-video")["unit_price"] == 0.112
    assert pricing("fal-ai/kling-video/v1/pro/image-to-video") == {"published": False, "currency": "USD",
                                                                   "text": "not published by fal"}
    with server.http() as http:
        listed = {e["id"]: e["price"] for e in http.get("/api/endpoints").raise_for_status().json()}
    assert sum(p["published"] for p in listed.values()) == 11
    assert listed[V1] == pricing(V1)


def test_index_groups_version_tier_kind_and_filters(page, server):
    page.goto(server.url + "/")
    page.wait_for_selector(".card")
    assert "Try the 45 Kling video endpoints" in page.inner_text(".hero")
    versions = page.eval_on_selector_all(".version", "els => els.map((e) => e.dataset.version)")
    assert versions == ["v3", "v2.6", "v2.5-turbo", "v2.1", "v2", "v1.6", "v1.5", "v1", "o3", "o1"]
    tiers = page.eval_on_selector_all('.version[data-version="v3"] .tier', "els => els.map((e) => e.dataset.tier)")
    assert tiers == ["standard", "pro", "4k", "turbo/standard", "turbo/pro"]
    v26 = page.locator('.version[data-version="v2.6"] .tier[data-tier="pro"]')
    assert v26.locator("h3").inner_text().startswith("Pro")
    assert v26.locator(".card").evaluate_all("els => els.map((e) => e.dataset.endpoint)") == [
        V26, "fal-ai/kling-video/v2.6/pro/text-to-video"]
    kinds = page.locator('.version[data-version="o3"] .tier[data-tier="standard"] .badge').all_inner_texts()
    assert kinds == ["image-to-video", "text-to-video", "reference-to-video"]
    assert page.locator('.version[data-version="v3"] h2').inner_text().startswith("Kling 3.0")

    # The filter: every word must match; what is left is regrouped, the rest hidden whole.
    page.get_by_label("Filter endpoints").fill("o3 text")
    shown = page.locator(".card:visible").evaluate_all("els => els.map((e) => e.dataset.endpoint)")
    assert shown == [f"fal-ai/kling-video/o3/{t}/text-to-video" for t in ("standard", "pro", "4k")]
    assert page.locator(".version:visible").count() == 1
    assert page.inner_text("#filter-count") == "3 of 45 endpoints match"
    assert "q=o3+text" in page.url
    page.get_by_label("Filter endpoints").fill("brush")  # feature tags count too
    assert page.locator(".card:visible").count() == 2  # v1 standard and v1.5 pro image-to-video
    page.get_by_label("Filter endpoints").fill("nothing-like-this")
    assert page.locator(".filter-empty").is_visible() and page.locator(".card:visible").count() == 0
    page.get_by_label("Filter endpoints").press("Escape")
    assert page.locator(".card:visible").count() == 45 and page.inner_text("#filter-count") == "45 endpoints"
    # A filtered list can be linked; "/" jumps to the box.
    page.goto(server.url + "/?q=elements")
    page.wait_for_selector("#filter-count")
    with server.http() as http:
        listed = http.get("/api/endpoints").raise_for_status().json()
    with_elements = [e["id"] for e in listed if e["category"] == "elements" or "elements" in e["fields"]]
    assert len(with_elements) == 10  # v1.6 elements, o1/o3 reference-to-video, v3 image-to-video
    assert sorted(page.locator(".card:visible").evaluate_all("els => els.map((e) => e.dataset.endpoint)")) == sorted(with_elements)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "endpoint-filter"
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(server.url + "/?q=v3+standard")
    page.wait_for_selector("#filter-count")
    screenshot(page, "playground-index.png")


def submitted(page, endpoint_id: str) -> tuple[dict, httpx.Response | None]:
    """Press Run; the JSON body the page POSTs to the queue, and the server's answer to it."""
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith(f"/queue/{endpoint_id}")) as request:
        page.click(".run-button")
    response = request.value.response()
    return request.value.post_data_json, response


def only_unsupported(response) -> list[str]:
    """A 422 whose items are all feature_not_supported: the body passed fal's schema and rules."""
    assert response.status == 422, response.status
    detail = response.json()["detail"]
    assert {d["type"] for d in detail} == {"feature_not_supported"}, detail
    # A feature with no field on that endpoint (text-to-video itself: no start image) is located at
    # the body as a whole, ["body"]: named "" here.
    return [d["loc"][1] if len(d["loc"]) > 1 else "" for d in detail]


def test_text_to_video_page_submits_fals_json(page, server):
    page.goto(f"{server.url}/models/{T2V}")
    page.wait_for_selector("#field-prompt")
    assert page.locator(".image-field").count() == 0  # nothing to upload on text to video
    page.check("#shots-toggle")  # a storyboard of at most six shots (fal's limit)
    for _ in range(4):
        page.click("text=+ Add shot")
    assert page.locator(".shot").count() == 6 and page.is_disabled("text=+ Add shot")
    page.uncheck("#shots-toggle")  # one prompt again: multi_prompt is not sent
    page.fill("#field-prompt", "A lighthouse in a storm, waves breaking")
    page.select_option("#field-duration", "10")
    page.click("details.more summary")
    page.select_option("#field-aspect_ratio", "9:16")
    body, response = submitted(page, T2V)
    assert body == {"prompt": "A lighthouse in a storm, waves breaking", "duration": "10",
                    "negative_prompt": "blur, distort, and low quality", "cfg_scale": 0.5, "aspect_ratio": "9:16",
                    "generate_audio": True, "shot_type": "customize"}
    only_unsupported(response)


def test_reference_to_video_page_builds_elements_and_image_urls(page, server):
    page.goto(f"{server.url}/models/{R2V}")
    page.wait_for_selector('[data-field="elements"] .add-element')
    assert page.locator('[data-field="elements"] [role=group]').count() == 1
    page.fill("#field-prompt", "@Element1 walks past @Image1")
    page.click("text=+ Add element")
    element = page.locator(".element-item").nth(0)
    assert element.locator(".element-title").inner_text() == "Element 1 · @Element1"
    # The frontal image by upload; references: one pasted URL, one upload, at most three.
    element.locator('[data-key="frontal_image_url"] input[type=file]').set_input_files(image_file())
    element.locator('[data-key="frontal_image_url"] .image-status:has-text("Uploaded")').wait_for()
    frontal = element.locator('[data-key="frontal_image_url"] input.image-url').input_value()
    refs = element.locator('[data-key="reference_image_urls"]')
    assert refs.locator(".list-item").count() == 1  # fal: at least one
    with server.http() as http:  # an image already online, to paste by URL
        put = http.post("/storage/upload/initiate", json={"content_type": "image/png", "file_name": "side.png"}).json()
        httpx.put(put["upload_url"], content=png_bytes(200, 300), headers={"Content-Type": "image/png"}).raise_for_status()
    pasted = put["file_url"]
    refs.locator("input.image-url").nth(0).fill(pasted)
    refs.locator("input.image-url").nth(0).press("Tab")
    for _ in range(2):
        refs.locator(".add-image").click()
    assert refs.locator(".add-image").is_disabled() and refs.locator(".list-count").inner_text() == "3 of at most 3"
    refs.locator(".list-item").nth(1).locator("input[type=file]").set_input_files(image_file(320, 240))
    refs.locator('.list-item >> nth=1 >> .image-status:has-text("Uploaded")').wait_for()
    uploaded = refs.locator("input.image-url").nth(1).input_value()
    refs.locator(".list-item").nth(2).get_by_role("button", name="Remove this reference image").click()
    assert refs.locator(".list-item").count() == 2 and not refs.locator(".add-image").is_disabled()
    # The endpoint's own image_urls list, referred to as @Image1.
    images = page.locator('[data-field="image_urls"]')
    images.locator(".add-image").click()
    assert images.locator(".list-item-head").inner_text().startswith("Reference image 1 · @Image1")
    images.locator("input[type=file]").set_input_files(image_file())
    images.locator('.image-status:has-text("Uploaded")').wait_for()
    style = images.locator("input.image-url").input_value()
    assert frontal.startswith(server.url + "/files/") and uploaded.startswith(server.url + "/files/")
    page.wait_for_function("() => [...document.querySelectorAll('[data-field=\"elements\"] img.image-preview:not([hidden])')]"
                           ".every((img) => img.complete)")
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.eval_on_selector('[data-field="elements"]', "el => { el.scrollIntoView({block: 'start'}); window.scrollBy(0, -90); }")
    screenshot(page, "playground-reference.png")

    body, response = submitted(page, R2V)
    assert body == {"prompt": "@Element1 walks past @Image1", "aspect_ratio": "16:9", "duration": "5",
                    "elements": [{"frontal_image_url": frontal, "reference_image_urls": [pasted, uploaded]}],
                    "image_urls": [style]}
    assert {"elements", "image_urls"} <= set(only_unsupported(response))  # and no start image
    # The API tab shows the same input.
    page.click("button[data-tab=api]")
    page.click('button[data-lang="curl"]')
    assert '"reference_image_urls"' in page.inner_text(".code-panel code.snippet")
    page.click("button[data-tab=playground]")

    # An element without reference images: fal's rule (1-3), checked by the server, shown on that element.
    for _ in range(2):
        refs.locator(".list-item").nth(0).get_by_role("button", name="Remove this reference image").click()
    body, response = submitted(page, R2V)
    assert body["elements"] == [{"frontal_image_url": frontal}]
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body", "elements", 0, "reference_image_urls"]
    error = element.locator('[data-key="reference_image_urls"] > .field-error')
    expect(error).to_have_text(detail["msg"])
    assert "element" in detail["msg"] and page.locator('[data-field="elements"]').get_attribute("class").count("invalid")
    assert page.locator('[data-field="prompt"] .field-error').inner_text() == ""


def test_elements_page_builds_input_image_urls(page, server):
    page.goto(f"{server.url}/models/{ELEMENTS}")
    page.wait_for_selector('[data-field="input_image_urls"] .list-item')
    field = page.locator('[data-field="input_image_urls"]')
    assert field.locator(".required").count() == 1 and field.locator(".list-item").count() == 1  # required: one to start
    page.fill("#field-prompt", "The cat and the hat on a bench")
    for _ in range(3):
        field.locator(".add-image").click()
    assert field.locator(".add-image").is_disabled() and field.locator(".list-count").inner_text() == "4 of at most 4"
    urls = []
    for i in range(2):
        field.locator(".list-item").nth(i).locator("input[type=file]").set_input_files(image_file())
        field.locator(f'.list-item >> nth={i} >> .image-status:has-text("Uploaded")').wait_for()
        urls.append(field.locator("input.image-url").nth(i).input_value())
    field.locator("input.image-url").nth(2).fill(server.url + "/files/hat.png")
    field.locator("input.image-url").nth(2).press("Tab")
    urls.append(server.url + "/files/hat.png")
    field.locator(".list-item").nth(3).get_by_role("button", name="Remove this image").click()
    body, response = submitted(page, ELEMENTS)
    assert body == {"prompt": "The cat and the hat on a bench", "duration": "5",
                    "negative_prompt": "blur, distort, and low quality", "aspect_ratio": "16:9", "input_image_urls": urls}
    assert "input_image_urls" in only_unsupported(response)


def test_voices_editor_sends_at_most_two_and_shows_the_servers_refusal(page, server):
    page.goto(f"{server.url}/models/{V26}")
    page.wait_for_selector('[data-field="voice_ids"] .add-voice')
    page.fill("#field-prompt", "<<<voice_1>>> says hello to <<<voice_2>>>")
    upload_image(page, "start_image_url")
    voices = page.locator('[data-field="voice_ids"]')
    voices.locator(".add-voice").click()
    voices.locator(".add-voice").click()
    assert voices.locator(".add-voice").is_disabled()  # fal: at most two voices per task
    assert voices.locator(".voice-row label").all_inner_texts() == ["<<<voice_1>>>", "<<<voice_2>>>"]
    voices.locator("input.voice-id").nth(0).fill("voice-alice")
    voices.locator("input.voice-id").nth(1).fill("voice-bob")
    body, response = submitted(page, V26)
    assert body["voice_ids"] == ["voice-alice", "voice-bob"]
    assert sorted(only_unsupported(response)) == ["generate_audio", "voice_ids"]
    refusal = next(d for d in response.json()["detail"] if d["loc"] == ["body", "voice_ids"])
    expect(page.locator("#field-voice_ids-error")).to_have_text(refusal["msg"])


def test_form_is_built_from_the_schema(page, server):
    page.goto(f"{server.url}/models/{V1}")
    page.wait_for_selector("#field-prompt")
    assert page.eval_on_selector("#field-prompt", "el => el.tagName") == "TEXTAREA"
    assert page.locator('[data-field="prompt"] .required').count() == 1
    assert page.locator('[data-field="image_url"] .required').count() == 1
    assert page.locator('[data-field="negative_prompt"] .required').count() == 0
    assert page.eval_on_selector("#field-duration", "el => [el.tagName, el.value, [...el.options].map(o => o.value)]") == \
        ["SELECT", "5", ["5", "10"]]
    slider = page.eval_on_selector("#field-cfg_scale", "el => [el.type, el.min, el.max, el.value]")
    assert slider == ["range", "0", "1", "0.5"]
    assert page.input_value("#field-negative_prompt") == "blur, distort, and low quality"
    # Optional enums offer "not set"; the brush replaces the two mask fields.
    assert page.eval_on_selector("#field-camera_control", "el => el.options[0].value") == ""
    assert page.locator(".brush-section").count() == 1
    assert page.locator("#field-static_mask_url").count() == 0
    # Up to six moving areas (Kling's limit), then the button stops offering more.
    page.click(".brush-section summary")
    for _ in range(5):
        page.click(".chip.add")
    assert page.locator(".chip[data-layer]").count() == 7  # static + 6
    assert page.is_disabled(".chip.add")

    page.goto(f"{server.url}/models/{O3}")
    page.wait_for_selector("#field-generate_audio", state="attached")
    assert page.eval_on_selector("#field-generate_audio", "el => [el.type, el.getAttribute('role'), el.checked]") == \
        ["checkbox", "switch", False]
    assert page.eval_on_selector("#field-duration", "el => el.options.length") == 13
    assert page.locator(".brush-section").count() == 0


def test_upload_brush_run_progress_logs_and_video(page, server):
    """The whole path: upload, paint, draw a path, run, watch progress and logs, play the video."""
    page.goto(f"{server.url}/models/{V1}")
    page.fill("#field-prompt", "The yellow ball rolls to the right")
    image_url = upload_image(page)
    assert image_url.startswith(server.url + "/files/")

    page.click(".brush-section summary")
    stage = page.locator(".brush-paths")
    stage.scroll_into_view_if_needed()
    box = stage.bounding_box()
    scale = box["width"] / W

    def at(x, y):
        return box["x"] + x * scale, box["y"] + y * scale

    def set_brush_size(pixels):  # on screen; the slider is a range input
        page.eval_on_selector(".brush-size", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
                              round(pixels))

    def stroke(points, steps=6):
        page.mouse.move(*at(*points[0]))
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*at(*p), steps=steps)
        page.mouse.up()

    # Moving area 1 (selected first): the yellow ball (png_bytes draws it at 160..320 × 90..180),
    # with a brush ~90 image pixels wide.
    set_brush_size(90 * scale)
    stroke([(200, 135), (280, 135)])
    page.click('button[data-tool="path"]')
    path = [(240, 135), (360, 90), (470, 70)]
    stroke(path, steps=12)
    # The static area: the blue rectangle (384..512 × 180..288), with a brush ~40 pixels wide.
    page.click('.chip[data-layer="static"]')
    page.click('button[data-tool="paint"]')
    set_brush_size(40 * scale)
    stroke([(410, 210), (485, 210), (485, 255), (410, 255), (440, 235)])
    assert "Moving area 1: painted, path of" in page.inner_text(".brush-status")
    page.eval_on_selector(".brush-section", "el => { el.scrollIntoView({block: 'start'}); window.scrollBy(0, -80); }")
    screenshot(page, "playground-brush.png")

    page.evaluate(WATCH_JS)
    page.click(".run-button")
    assert wait_finished(page) == "done", page.inner_text(".run-panel")
    request_id = page.eval_on_selector(".run-panel", "el => el.dataset.requestId")
    seen = page.evaluate("window.__seen")
    moving = [p for p in seen["progress"] if 0 < p < 100]
    assert len(set(moving)) >= 2, seen["progress"]  # the bar moved, not just 0 → 100
    assert moving == sorted(moving), seen["progress"]  # and only forwards
    assert "running" in seen["logs"], seen  # log lines arrived while it ran

    # What the page sent: mask PNGs at the image's size, Kling trajectories (origin bottom-left).
    item = history_item(server, request_id)
    sent = item["input"]
    assert sent["image_url"] == image_url and sent["prompt"] == "The yellow ball rolls to the right"
    [dynamic] = sent["dynamic_masks"]
    points = [(p["x"], p["y"]) for p in dynamic["trajectories"]]
    assert 2 <= len(points) <= 77
    assert abs(points[0][0] - 240) <= 2 and abs(points[0][1] - (H - 135)) <= 2, points[0]
    assert abs(points[-1][0] - 470) <= 2 and abs(points[-1][1] - (H - 70)) <= 2, points[-1]
    mask = fetch_png(dynamic["mask_url"])
    assert mask.shape == (H, W) and set(np.unique(mask)) <= {0, 255}
    assert mask[135, 170] == 255 and mask[135, 310] == 255 and mask[100, 240] == 255 and mask[170, 240] == 255
    assert mask[300, 40] == 0 and mask[230, 440] == 0 and mask[135, 360] == 0
    still = fetch_png(sent["static_mask_url"])
    assert still.shape == (H, W) and still[235, 445] == 255 and still[135, 240] == 0 and still[100, 600] == 0

    # The result: a video that plays, is seekable, shows pictures that are not blank, and moves.
    assert page.locator(".request-id").inner_text() == request_id
    shown_time = page.locator(".generation-time").inner_text()
    assert shown_time.endswith("s") and abs(float(shown_time.split()[0]) - item["inference_time"]) < 0.05
    video_url = item["video"]["url"]
    assert page.get_attribute(".result a[download]", "href") == video_url
    assert page.get_attribute("video.result-video", "src") == video_url
    page.wait_for_function("() => document.querySelector('video.result-video').readyState >= 2", timeout=30000)
    first = page.evaluate(FRAME_JS, 0.1)
    late = page.evaluate(FRAME_JS, 4.5)
    assert first["readyState"] >= 2 and late["readyState"] >= 2 and first["duration"] > 4.5
    grey0, grey1 = np.array(first["grey"]), np.array(late["grey"])
    assert grey0.std() > 20 and grey1.std() > 20  # a picture, not a blank frame
    assert np.abs(grey0 - grey1).mean() > 1.0  # the ball moved

    page.set_viewport_size({"width": 1280, "height": 1280})
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "playground-endpoint.png")
    assert same_origin_only(page, server) == []


def test_history_reopens_a_result(page, server):
    with server.http() as http:
        image = http.post("/storage/upload/initiate", json={"content_type": "image/png", "file_name": "a.png"}).json()
        httpx.put(image["upload_url"], content=png_bytes(160, 120), headers={"Content-Type": "image/png"}).raise_for_status()
        job = http.post(f"/queue/{TURBO}", json={"prompt": "frames=6 history", "image_url": image["file_url"]}).json()
        for _ in range(200):
            if http.get(job["status_url"]).json()["status"] == "COMPLETED":
                break
            time.sleep(0.1)
        video = http.get(job["response_url"]).raise_for_status().json()["video"]
    page.goto(f"{server.url}/models/{TURBO}")
    item = page.locator(f'.history-item[data-request-id="{job["request_id"]}"]')
    assert "frames=6 history" in item.inner_text()
    item.click()
    assert wait_finished(page) == "done"
    assert page.get_attribute("video.result-video", "src") == video["url"]
    assert page.locator(".request-id").inner_text() == job["request_id"]
    assert f"request={job['request_id']}" in page.url
    # Its inputs can be put back into the form.
    page.click("text=Reuse these inputs")
    assert page.input_value("#field-prompt") == "frames=6 history"
    assert page.input_value("#field-image_url") == image["file_url"]
    page.wait_for_function("() => document.querySelector('[data-field=\"image_url\"] .image-preview').naturalWidth === 160")
    # A link with ?request= opens the same result on a fresh page.
    page.goto(page.url)
    assert wait_finished(page) == "done"
    assert page.locator(".request-id").inner_text() == job["request_id"]


def test_server_validation_message_appears_next_to_the_field(page, server):
    page.goto(f"{server.url}/models/{V2}")
    page.fill("#field-prompt", "A bad guidance value")
    page.fill("#field-image_url", server.url + "/files/none.png")
    page.press("#field-image_url", "Tab")
    page.click("details.more summary")
    page.fill('[data-field="cfg_scale"] input[type=number]', "1.5")
    page.click(".run-button")
    error = page.locator('[data-field="cfg_scale"] .field-error')
    error.wait_for()
    with server.http() as http:
        answer = http.post(f"/queue/{V2}", json={"prompt": "x", "image_url": "http://example.com/a.png", "cfg_scale": 1.5})
    assert answer.status_code == 422
    [detail] = answer.json()["detail"]
    assert detail["loc"] == ["body", "cfg_scale"]
    assert error.inner_text() == detail["msg"]
    assert page.locator('[data-field="prompt"] .field-error').inner_text() == ""
    assert page.eval_on_selector(".run-panel", "el => el.dataset.state") == "failed"


def test_error_found_while_running_appears_next_to_its_field(page, server):
    """StepEngine's "fail" raises EngineError(loc=("prompt",)) after the request was queued."""
    page.goto(f"{server.url}/models/{TURBO}")
    page.fill("#field-prompt", "please fail")
    upload_image(page)
    page.click(".run-button")
    assert wait_finished(page) == "failed"
    assert page.locator('[data-field="prompt"] .field-error').inner_text() == "the test engine was asked to fail"


def test_queue_position_then_cancel_while_running(page, server):
    """A request behind another shows its queue position, then runs, then Cancel ends it."""
    page.goto(f"{server.url}/models/{TURBO}")
    page.fill("#field-prompt", "frames=2000 delay=0.05 a long one")
    image_url = upload_image(page)
    with server.http() as http:
        blocker = http.post(f"/queue/{TURBO}", json={"prompt": "frames=2000 delay=0.05 blocker", "image_url": image_url}).json()
        for _ in range(300):
            if http.get(blocker["status_url"]).json()["status"] == "IN_PROGRESS":
                break
            time.sleep(0.1)
        page.click(".run-button")
        page.wait_for_function("() => document.querySelector('.run-panel').dataset.state === 'queued'")
        assert page.inner_text(".run-status") == "In queue · next in line"
        assert http.put(blocker["cancel_url"]).status_code == 202
    page.wait_for_function("() => document.querySelector('.run-panel').dataset.state === 'running'", timeout=60000)
    request_id = page.eval_on_selector(".run-panel", "el => el.dataset.requestId")
    page.click(".run-panel button.danger")
    assert wait_finished(page, 60) == "cancelled"
    assert page.inner_text(".run-status") == "Cancelled"
    assert page.locator(".run-panel button.danger").is_hidden()
    item = history_item(server, request_id)
    assert item["status"] == "COMPLETED" and item["error_type"] == "request_cancelled"
    assert history_item(server, blocker["request_id"])["error_type"] == "request_cancelled"


def test_shots_editor_checks_the_total_and_sends_multi_prompt(page, server):
    page.goto(f"{server.url}/models/{O3}")
    image_url = drop_image(page)
    assert page.eval_on_selector('[data-field="image_url"] .image-preview', "img => img.naturalWidth") == W
    page.check("#shots-toggle")
    assert page.locator('[data-field="prompt"]').is_hidden()  # prompt or multi_prompt, not both
    prompts = page.locator(".shot textarea")
    prompts.nth(0).fill("frames=4 the harbour at dawn")
    prompts.nth(1).fill("boats leave")
    page.click("text=+ Add shot")
    page.locator(".shot textarea").nth(2).fill("gulls")
    durations = page.locator(".shot select")
    durations.nth(0).select_option("3")
    durations.nth(1).select_option("2")
    durations.nth(2).select_option("4")
    assert page.inner_text(".shots-total").startswith("Total 9 s of 5 s")
    page.click(".run-button")  # refused locally, next to the field
    assert "add up to 9 s but the video is 5 s" in page.inner_text('[data-field="multi_prompt"] .field-error')
    assert page.eval_on_selector(".run-panel", "el => el.dataset.state") == "idle"
    page.click("text=Make the video 9 s")
    assert page.input_value("#field-duration") == "9"
    assert "✓" in page.inner_text(".shots-total")
    page.locator(".shot button[aria-label='Remove this shot']").nth(2).click()
    assert page.inner_text(".shots-total").startswith("Total 5 s of 9 s")
    page.select_option("#field-duration", "5")
    page.click(".run-button")
    assert wait_finished(page) == "done"
    sent = history_item(server, page.eval_on_selector(".run-panel", "el => el.dataset.requestId"))["input"]
    assert sent["multi_prompt"] == [{"prompt": "frames=4 the harbour at dawn", "duration": "3"},
                                    {"prompt": "boats leave", "duration": "2"}]
    assert sent["duration"] == "5" and "prompt" not in sent and sent["image_url"] == image_url


def test_api_tab_code_runs_as_copied(page, server, tmp_path):
    """Each snippet, copied from the API tab, runs against the server and gets a video."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{server.url}/models/{TURBO}")
    page.fill("#field-prompt", "frames=6 from the API tab")
    image_url = upload_image(page)
    page.click("button[data-tab=api]")
    snippets = {}
    for lang in ("python-fal", "python-stillreel", "javascript", "curl"):
        page.click(f'button[data-lang="{lang}"]')
        page.wait_for_function(f"() => document.querySelector('.code-panel code.snippet').dataset.lang === '{lang}'")
        page.click(".code-wrap .copy")
        page.wait_for_function("() => document.querySelector('.code-wrap .copy').textContent === 'Copied'")
        snippets[lang] = page.evaluate("navigator.clipboard.readText()")
        assert snippets[lang] == page.inner_text(".code-panel code.snippet")
        assert "frames=6 from the API tab" in snippets[lang] and image_url in snippets[lang]
        assert server.key not in snippets[lang]  # the key is read from the environment
    assert f'use_stillreel("{server.url}", key=os.environ["STILLREEL_KEY"])' in snippets["python-fal"]
    assert f'proxyUrl: {{ url: "{server.url}/api/fal/proxy", when: "always" }}' in snippets["javascript"]

    env = {**os.environ, "STILLREEL_KEY": server.key, "PYTHONPATH": str(REPO)}
    env.pop("FAL_KEY", None)
    runs = {
        "python-fal": [sys.executable, "-c", snippets["python-fal"]],
        "python-stillreel": [sys.executable, "-c", snippets["python-stillreel"]],
        "curl": ["bash", "-c", snippets["curl"]],
    }
    node_modules = REPO / "tests" / "js" / "node_modules" / "@fal-ai" / "client"
    if shutil.which("node") and node_modules.exists():
        script = REPO / "tests" / "js" / f"_playground_snippet_{os.getpid()}.mjs"  # resolves @fal-ai/client
        script.write_text(snippets["javascript"])
        runs["javascript"] = ["node", str(script)]
    else:
        script = None
    try:
        for lang, command in runs.items():
            proc = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
            assert proc.returncode == 0, f"{lang}:\n{proc.stdout}\n{proc.stderr}"
            assert server.url + "/files/" in proc.stdout, f"{lang}:\n{proc.stdout}"
    finally:
        if script:
            script.unlink(missing_ok=True)
    assert "javascript" in runs, "node and tests/js/node_modules are needed to run the JavaScript snippet (make js-deps)"


def test_key_is_asked_once_and_kept(browser, server):
    page = new_page(browser, server, key=False)
    try:
        page.goto(f"{server.url}/models/{TURBO}")
        page.wait_for_selector("#field-prompt")
        assert "enter your API key" in page.inner_text(".history")
        assert not page.is_visible("#key-dialog")
        page.set_input_files('[data-field="image_url"] input[type=file]', image_file())
        page.wait_for_selector("#key-dialog[open]")  # the upload needs a key
        assert page.inner_text("#key-error") == ""
        page.fill("#key-input", "wrong:key")
        page.click("#key-save")
        expect(page.locator("#key-error")).to_have_text("The server did not accept this key.")
        page.fill("#key-input", server.key)
        page.click("#key-save")
        page.wait_for_selector('[data-field="image_url"] .image-status:has-text("Uploaded")')
        assert page.evaluate(f"localStorage.getItem({KEY_STORAGE!r})") == server.key
        page.reload()
        page.wait_for_function("() => { const text = document.querySelector('.history')?.innerText || '';"
                               " return /Nothing yet|\\d/.test(text) && !text.includes('API key'); }")
        assert not page.is_visible("#key-dialog")
        assert page.errors == []
    finally:
        page.context.close()


def test_no_auth_server_asks_for_nothing(browser, tmp_path):
    with LiveServer.start(tmp_path / "open", auth=False, engine="engines:StepEngine") as open_server:
        page = new_page(browser, open_server, key=False)
        try:
            page.goto(f"{open_server.url}/models/{TURBO}")
            page.fill("#field-prompt", "frames=4 no key")
            upload_image(page)
            page.click(".run-button")
            assert wait_finished(page) == "done"
            assert page.is_hidden("#key-button") and not page.is_visible("#key-dialog")
            page.click("button[data-tab=api]")
            assert f'use_stillreel("{open_server.url}")' in page.inner_text(".code-panel code.snippet")
            assert page.errors == []
        finally:
            page.context.close()


def phone_screenshot_of_a_result(page, server) -> None:
    """docs/playground-phone.png: a finished motion-brush request reopened on a phone."""
    with server.http() as http:
        done = [i for i in http.get("/api/requests", params={"limit": 50}).json()
                if i["endpoint_id"] == V1 and i["video"]]
    if not done:
        pytest.skip("run the whole module to make the phone screenshot (it reopens the brush test's video)")
    page.goto(f"{server.url}/models/{V1}?request={done[0]['request_id']}")
    assert wait_finished(page) == "done"
    page.wait_for_function("() => document.querySelector('video.result-video').readyState >= 2")
    page.evaluate(FRAME_JS, 3.0)
    page.eval_on_selector(".output-panel", "el => { el.scrollIntoView({block: 'start'}); window.scrollBy(0, -70); }")
    screenshot(page, "playground-phone.png")


@pytest.mark.parametrize("phone", [False, True], ids=["laptop", "phone"])
def test_layout_fits_the_screen(browser, server, phone):
    page = new_page(browser, server, phone=phone)
    try:
        for path in ("/", f"/models/{V1}", f"/models/{O3}", f"/models/{R2V}"):
            page.goto(server.url + path)
            page.wait_for_selector(".card, #field-prompt")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        # Phones stack the result under the form; laptops put them side by side.
        form, result = page.locator(".input-panel").bounding_box(), page.locator(".output-panel").bounding_box()
        assert (result["y"] >= form["y"] + form["height"]) if phone else (result["x"] >= form["x"] + form["width"])
        if phone:
            page.goto(f"{server.url}/models/{V1}")
            page.fill("#field-prompt", "A yellow ball rolls across a gradient")
            upload_image(page)
            page.click(".brush-section summary")
            page.wait_for_selector(".brush-stage:not([hidden])")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"with an image the page scrolls sideways by {overflow}px"
            right = page.evaluate("Math.max(...[...document.querySelectorAll('.panel, .brush-stage, .image-drop')]"
                                  ".map((el) => el.getBoundingClientRect().right))")
            assert right <= 390, right
            # The elements and reference-image editors fit too, with an element and images added.
            page.goto(f"{server.url}/models/{R2V}")
            page.click("text=+ Add element")
            page.locator(".element-item .add-image").click()
            page.locator('[data-field="image_urls"] .add-image').click()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the elements editor scrolls sideways by {overflow}px"
            right = page.evaluate("Math.max(...[...document.querySelectorAll('.element-item, .list-item, .image-drop')]"
                                  ".map((el) => el.getBoundingClientRect().right))")
            assert right <= 390, right
            page.goto(server.url + "/")
            page.get_by_label("Filter endpoints").fill("o3 text")  # typed on a phone: still usable
            assert page.locator(".card:visible").count() == 3
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
            if os.environ.get("STILLREEL_UPDATE_SCREENSHOTS") == "1":
                phone_screenshot_of_a_result(page, server)
        assert page.errors == []
    finally:
        page.context.close()
