"""Fetching and decoding inputs: data URIs, our own files, http(s) on loopback, SSRF refusal,
fal's error types, masks and the trajectory flip."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import io
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from storage_helpers import encode, picture

from stillreel.config import Limits
from stillreel.endpoints.registry import ENDPOINTS, Plan, PlannedMask
from stillreel.engines.base import Aspect, CameraPreset, EngineError
from stillreel.media.fetch import Fetcher, is_public_address
from stillreel.media.resolve import decode_image, decode_mask, resolve, trajectory_to_top_left
from stillreel.storage.local import LocalStorage

LOOPBACK = Limits(allow_private_urls=True, fetch_timeout_s=5)
PNG = picture(64, 48)


class Site:
    """A loopback web server with a few canned answers."""

    def __init__(self):
        seen = self.seen = []  # every path asked for
        routes = self.routes = {
            "/image.png": (200, {"Content-Type": "image/png"}, PNG),
            "/missing.png": (404, {}, b"not here"),
            "/text.txt": (200, {"Content-Type": "text/plain"}, b"hello, not an image"),
            "/big.bin": (200, {}, b"x" * 5000),
            "/hop1": (302, {"Location": "/hop2"}, b""),
            "/hop2": (301, {"Location": "/image.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                seen.append(self.path)
                if self.path == "/chunked-big":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(10):
                        self.wfile.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if self.path == "/slow":
                    time.sleep(3)
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site():
    s = Site()
    yield s
    s.close()


def _error(call) -> EngineError:
    with pytest.raises(EngineError) as caught:
        call()
    return caught.value


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# -- fetching -------------------------------------------------------------------------------


def test_data_uris():
    fetcher = Fetcher(None, Limits())
    assert fetcher.fetch(data_uri(PNG), "image_url") == PNG
    urlsafe = base64.urlsafe_b64encode(PNG).decode().rstrip("=")
    assert fetcher.fetch(f"data:image/png;base64,{urlsafe}", "image_url") == PNG
    wrapped = "\n".join(data_uri(PNG)[i : i + 76] for i in range(0, len(data_uri(PNG)), 76))
    assert fetcher.fetch(wrapped, "image_url") == PNG
    assert fetcher.fetch("data:text/plain,a%20b%00c", "x") == b"a b\x00c"
    assert fetcher.fetch("data:," + quote(PNG), "image_url") == PNG
    bad = _error(lambda: fetcher.fetch("data:image/png;base64,@@@not base64", "image_url"))
    assert bad.error_type == "file_download_error" and bad.loc == ("image_url",)
    assert _error(lambda: fetcher.fetch("data:image/png;base64", "image_url")).error_type == "file_download_error"


def test_data_uri_over_the_limit():
    fetcher = Fetcher(None, Limits(max_input_bytes=1000))
    err = _error(lambda: fetcher.fetch(data_uri(b"z" * 2000), ("dynamic_masks", 1, "mask_url")))
    assert err.error_type == "file_too_large" and err.loc == ("dynamic_masks", 1, "mask_url")
    assert "dynamic_masks[1].mask_url" in err.message


def test_http_fetch_and_redirects(site):
    with Fetcher(None, LOOPBACK) as fetcher:
        assert fetcher.fetch(f"{site.url}/image.png", "image_url") == PNG
        assert fetcher.fetch(f"{site.url}/hop1", "image_url") == PNG
        loop = _error(lambda: fetcher.fetch(f"{site.url}/loop", "image_url"))
        assert loop.error_type == "file_download_error" and "redirects" in loop.message
        missing = _error(lambda: fetcher.fetch(f"{site.url}/missing.png", "tail_image_url"))
        assert missing.error_type == "file_download_error" and "HTTP 404" in missing.message
        assert missing.loc == ("tail_image_url",) and missing.status == 422


def test_http_size_cap_and_timeout(site):
    with Fetcher(None, Limits(allow_private_urls=True, max_input_bytes=4000, fetch_timeout_s=1)) as fetcher:
        declared = _error(lambda: fetcher.fetch(f"{site.url}/big.bin", "image_url"))
        assert declared.error_type == "file_too_large"
        streamed = _error(lambda: fetcher.fetch(f"{site.url}/chunked-big", "image_url"))
        assert streamed.error_type == "file_too_large"
        slow = _error(lambda: fetcher.fetch(f"{site.url}/slow", "image_url"))
        assert slow.error_type == "file_download_error" and "Timed out" in slow.message


def test_unreachable_and_bad_schemes():
    fetcher = Fetcher(None, LOOPBACK)
    closed = _error(lambda: fetcher.fetch("http://127.0.0.1:9/none.png", "image_url"))  # discard port
    assert closed.error_type == "file_download_error"
    unresolvable = _error(lambda: fetcher.fetch("http://no-such-host.invalid/x.png", "image_url"))
    assert unresolvable.error_type == "file_download_error"
    for url in ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://x", "/relative/path.png", ""]:
        err = _error(lambda url=url: fetcher.fetch(url, "image_url"))
        assert err.error_type == "file_download_error", url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/image.png",
        "http://localhost:{port}/image.png",
        "http://[::1]:{port}/image.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.png",
        "http://192.168.1.1/x.png",
        "http://0.0.0.0:{port}/image.png",
        "http://[::ffff:127.0.0.1]:{port}/image.png",
        "http://2130706433:{port}/image.png",  # 127.0.0.1 as one number
        "http://[::127.0.0.1]:{port}/image.png",  # IPv4-compatible
        "http://[64:ff9b::127.0.0.1]:{port}/image.png",  # NAT64
        "http://[2002:7f00:1::1]:{port}/image.png",  # 6to4 around 127.0.0.1
    ],
)
def test_private_targets_are_refused(site, url):
    port = site.url.rsplit(":", 1)[1]
    fetcher = Fetcher(None, Limits(fetch_timeout_s=5))
    err = _error(lambda: fetcher.fetch(url.format(port=port), "image_url"))
    assert err.error_type == "file_download_error"
    assert "private or local address" in err.message, err.message


def test_public_address_check():
    assert is_public_address("8.8.8.8") and is_public_address("2606:4700:4700::1111")
    for address in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.1.1", "100.64.0.1",
                    "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "0.0.0.0", "224.0.0.1"]:
        assert not is_public_address(address), address


@pytest.mark.parametrize("embedded", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "100.64.0.1"])
def test_ipv6_forms_of_private_ipv4_are_private(embedded):
    """A translator or tunnel would take each of these to the IPv4 address inside; Python's
    ``is_global`` calls the NAT64, 6to4 and IPv4-compatible ones global whatever they carry."""
    a, b, c, d = (int(x) for x in embedded.split("."))
    forms = {
        "mapped": f"::ffff:{embedded}",
        "compatible": f"::{embedded}",
        "nat64": f"64:ff9b::{embedded}",
        "6to4": f"2002:{a:02x}{b:02x}:{c:02x}{d:02x}::1",
        "translated": f"::ffff:0:{embedded}",
    }
    for name, address in forms.items():
        assert not is_public_address(address), (name, address)


def test_ipv6_ranges_that_python_calls_global_but_are_not():
    for address in ["64:ff9b:1::808:808", "fec0::1"]:
        assert not is_public_address(address), address


def test_ipv6_forms_of_public_ipv4_stay_public():
    for address in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1"]:
        assert is_public_address(address), address


def test_own_files_are_read_from_storage(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    stored = storage.put_bytes(PNG, file_name="in.png", content_type="image/png")
    # SSRF protection is on and the host is a loopback alias nothing listens on: the bytes can
    # only have come from the store.
    fetcher = Fetcher(storage, Limits())
    assert fetcher.fetch(f"http://127.0.0.1:1/files/{stored.key}", "image_url") == PNG
    assert fetcher.fetch(f"https://stillreel.internal/files/{stored.key}?x=1", "image_url") == PNG
    small = Fetcher(storage, Limits(max_input_bytes=10))
    assert _error(lambda: small.fetch(f"http://h/files/{stored.key}", "image_url")).error_type == "file_too_large"
    # An unknown key is not ours: it is fetched like any URL (and here refused as private).
    err = _error(lambda: fetcher.fetch("http://127.0.0.1:1/files/b/00000000/nope_x.png", "image_url"))
    assert err.error_type == "file_download_error"


# -- decoding -------------------------------------------------------------------------------


def test_decode_image_errors():
    limits = Limits(max_image_pixels=100 * 100, min_image_side=16)
    assert decode_image(picture(100, 100), "image_url", limits).shape == (100, 100, 3)
    cases = [
        (b"hello, not an image", "image_load_error"),
        (picture(101, 100), "image_too_large"),
        (picture(15, 40), "image_too_small"),
        (picture(64, 64, "JPEG")[:300], "image_load_error"),  # truncated
    ]
    for data, expected in cases:
        err = _error(lambda data=data: decode_image(data, "end_image_url", limits))
        assert (err.error_type, err.loc, err.status) == (expected, ("end_image_url",), 422)


def test_decode_image_orientation_and_modes():
    # A 40×20 picture stored sideways (EXIF orientation 6: rotate 90° clockwise to view).
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, :20] = (255, 0, 0)  # left half red
    sideways = Image.fromarray(wide).transpose(Image.Transpose.ROTATE_90)  # stored 20×40
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode_image(encode(sideways, "JPEG", exif=exif, quality=95), "image_url", Limits())
    assert upright.shape == (20, 40, 3) and upright.dtype == np.uint8
    assert upright[10, 5, 0] > 200 and upright[10, 35, 0] < 60  # red back on the left

    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 10, 20))
    flat = decode_image(encode(rgba), "image_url", Limits())
    assert tuple(flat[5, 5]) == (0, 0, 255) and tuple(flat[5, 15]) == (255, 255, 255)
    gray = decode_image(picture(32, 32, mode="L"), "image_url", Limits())
    assert gray.shape == (32, 32, 3)
    assert decode_image(picture(32, 32, "WEBP"), "image_url", Limits()).shape == (32, 32, 3)


def _mask_picture(width, height, box, mode="L", on=255, off=0):
    image = Image.new(mode, (width, height), off)
    image.paste(on, box)
    return encode(image)


def test_masks_threshold_and_formats():
    limits = Limits()
    mask = decode_mask(_mask_picture(64, 48, (0, 0, 32, 48)), "static_mask_url", (64, 48), limits)
    assert mask.shape == (48, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255} and mask[:, :32].min() == 255 and mask[:, 32:].max() == 0
    # 0/1 masks and faint strokes still select their area.
    assert decode_mask(_mask_picture(64, 48, (0, 0, 32, 48), on=1), "m", (64, 48), limits)[:, :32].min() == 255
    assert decode_mask(_mask_picture(64, 48, (0, 0, 32, 48), on=60), "m", (64, 48), limits)[:, 32:].max() == 0
    # Strokes painted on a transparent canvas: the alpha channel is the mask.
    canvas = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    canvas.paste((0, 0, 0, 255), (32, 0, 64, 48))  # black but opaque strokes on the right
    alpha = decode_mask(encode(canvas), "m", (64, 48), limits)
    assert alpha[:, 32:].min() == 255 and alpha[:, :32].max() == 0
    # A colour mask (white on black, saved as RGB JPEG) works by luminance despite JPEG noise.
    rgb = Image.new("RGB", (64, 48), (0, 0, 0))
    rgb.paste((255, 255, 255), (0, 24, 64, 48))
    jpeg = decode_mask(encode(rgb, "JPEG", quality=70), "m", (64, 48), limits)
    assert jpeg[30:, :].mean() > 250 and jpeg[:18, :].mean() < 5
    empty = decode_mask(_mask_picture(64, 48, (0, 0, 0, 0)), "m", (64, 48), limits)
    assert empty.max() == 0


def test_mask_sizes():
    limits = Limits()
    # Half the size, same aspect ratio: scaled up.
    scaled = decode_mask(_mask_picture(32, 24, (0, 0, 16, 24)), "static_mask_url", (64, 48), limits)
    assert scaled.shape == (48, 64) and scaled[:, :30].min() == 255 and scaled[:, 34:].max() == 0
    # 1% off in aspect ratio is accepted, 10% is not.
    assert decode_mask(_mask_picture(128, 95, (0, 0, 1, 1)), "m", (128, 96), limits).shape == (96, 128)
    err = _error(lambda: decode_mask(_mask_picture(64, 64, (0, 0, 1, 1)), ("dynamic_masks", 2, "mask_url"),
                                     (64, 48), limits))
    assert err.status == 422 and err.loc == ("dynamic_masks", 2, "mask_url")
    assert "64×64" in err.message and "64×48" in err.message


def test_trajectory_flip_and_bounds():
    points = ((0, 0), (10, 48), (64, 24.5))
    assert trajectory_to_top_left(points, (64, 48), 0) == ((0.0, 48.0), (10.0, 0.0), (64.0, 23.5))
    err = _error(lambda: trajectory_to_top_left(((1, 1), (70, 10)), (64, 48), 3))
    assert err.loc == ("dynamic_masks", 3, "trajectory", 1) and err.status == 422
    assert "dynamic_masks[3]" in err.message and "(70, 10)" in err.message
    assert _error(lambda: trajectory_to_top_left(((5, -1),), (64, 48), 0)).loc[3] == 0


# -- resolve --------------------------------------------------------------------------------


def test_resolve_a_full_plan(site):
    end = picture(64, 48, "JPEG")
    plan = ENDPOINTS["fal-ai/kling-video/v1/standard/image-to-video"].plan(
        {
            "prompt": "a boat drifts",
            "image_url": f"{site.url}/image.png",
            "tail_image_url": data_uri(end, "image/jpeg"),
            "duration": "5",
            "cfg_scale": 0.7,
            "static_mask_url": data_uri(_mask_picture(64, 48, (0, 0, 10, 10))),
            "dynamic_masks": [
                {"mask_url": data_uri(_mask_picture(32, 24, (8, 8, 16, 16))),
                 "trajectories": [{"x": 10, "y": 10}, {"x": 50, "y": 40}]},
            ],
            "aspect_ratio": "1:1",
            "camera_control": "forward_up",
        }
    )
    plan = Plan.from_json(plan.to_json())  # as the worker reads it back from the queue
    with Fetcher(None, LOOPBACK) as fetcher:
        request = resolve(plan, fetcher)
    assert request.start_image.shape == (48, 64, 3)
    assert np.array_equal(request.start_image, np.asarray(Image.open(io.BytesIO(PNG)).convert("RGB")))
    assert request.end_image.shape == (48, 64, 3)
    assert request.static_mask.shape == (48, 64) and request.static_mask[:10, :10].min() == 255
    (brush,) = request.dynamic_masks
    assert brush.mask.shape == (48, 64) and brush.trajectory == ((10.0, 38.0), (50.0, 8.0))
    assert request.shots[0].prompt == "a boat drifts" and request.shots[0].seconds == 5 and request.seconds == 5
    assert (request.aspect, request.camera, request.guidance) == (Aspect.SQUARE, CameraPreset.FORWARD_UP, 0.7)
    assert request.negative_prompt == "blur, distort, and low quality"


def test_resolve_reports_fal_field_names(site):
    fetcher = Fetcher(None, LOOPBACK)
    o3 = ENDPOINTS["fal-ai/kling-video/o3/standard/image-to-video"].plan(
        {"image_url": data_uri(PNG), "end_image_url": f"{site.url}/text.txt",
         "multi_prompt": [{"prompt": "a", "duration": "2"}, {"prompt": "b", "duration": "3"}], "duration": "5"}
    )
    err = _error(lambda: resolve(o3, fetcher))
    # resolve names the normalized request's attribute; the endpoint maps it to its own fal field
    assert (err.error_type, err.loc) == ("image_load_error", ("end_image",))
    assert ENDPOINTS[o3.endpoint_id].fal_loc(err.loc) == ["body", "end_image_url"]

    v1_id = "fal-ai/kling-video/v1/standard/image-to-video"
    v1 = Plan(start_image_url=data_uri(PNG), shots=(("p", 5),), seconds=5,
              end_image_url=f"{site.url}/missing.png", endpoint_id=v1_id)
    err = _error(lambda: resolve(v1, fetcher))
    assert (err.error_type, err.loc) == ("file_download_error", ("end_image",))
    assert ENDPOINTS[v1_id].fal_loc(err.loc) == ["body", "tail_image_url"]

    outside = Plan(start_image_url=data_uri(PNG), shots=(("p", 5),), seconds=5,
                   dynamic_masks=(PlannedMask(f"{site.url}/missing.png", ((1, 1), (65, 10))),))
    err = _error(lambda: resolve(outside, fetcher))  # the trajectory is checked before the download
    assert err.loc == ("dynamic_masks", 0, "trajectory", 1)
    assert ENDPOINTS[v1_id].fal_loc(err.loc) == ["body", "dynamic_masks", 0, "trajectories", 1]

    shots = resolve(dataclasses.replace(o3, end_image_url=None), fetcher).shots
    assert [(s.prompt, s.seconds) for s in shots] == [("a", 2), ("b", 3)]


def _mp4(tmp_path, width=96, height=64, frames=6) -> tuple[bytes, list[np.ndarray]]:
    from videocheck import encode_frames, fractal_image

    first = fractal_image(width, height, 5)
    frames = [first, *(np.roll(first, 7 * k, axis=1) for k in range(1, frames))]
    return encode_frames(frames, tmp_path / "element.mp4").read_bytes(), frames


def test_decode_video_frame_gives_the_first_frame_checked_like_an_image(tmp_path):
    from stillreel.media.resolve import decode_video_frame

    data, frames = _mp4(tmp_path)
    frame = decode_video_frame(data, ("elements", 0, "video"), Limits())
    assert frame.shape == frames[0].shape and frame.dtype == np.uint8
    errors = [np.abs(frame.astype(int) - f).mean() for f in frames]
    assert errors[0] < 0.5 * min(errors[1:]), errors  # the first frame (through a lossy codec)
    small = Limits(max_image_pixels=96 * 64 - 1, min_image_side=16)
    cases = [
        (b"hello, not a video", Limits(), "unsupported_video_format"),
        (data[:200], Limits(), "unsupported_video_format"),  # truncated
        (PNG, Limits(), "unsupported_video_format"),  # FFmpeg would read it as a one-frame video
        (data, small, "image_too_large"),
        (data, Limits(min_image_side=65), "image_too_small"),
    ]
    for payload, limits, expected in cases:
        err = _error(lambda payload=payload, limits=limits: decode_video_frame(payload, ("elements", 0, "video"), limits))
        assert (err.error_type, err.loc) == (expected, ("elements", 0, "video")), err


@pytest.mark.skipif(__import__("shutil").which("ffmpeg") is None, reason="needs the ffmpeg CLI (make system-deps)")
def test_an_element_video_is_taken_upright_as_ffmpeg_shows_it(tmp_path):
    # A phone video stored sideways with a rotation tag, like a photo with EXIF orientation.
    import subprocess

    from stillreel.media.resolve import decode_video_frame

    data, _ = _mp4(tmp_path)
    (tmp_path / "in.mp4").write_bytes(data)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "in.mp4"), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(tmp_path / "turned.mp4")], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "turned.mp4"), "-frames:v", "1",
                    str(tmp_path / "shown.png")], check=True)  # the ffmpeg CLI rotates for display
    shown = np.asarray(Image.open(tmp_path / "shown.png").convert("RGB"))
    frame = decode_video_frame((tmp_path / "turned.mp4").read_bytes(), ("elements", 0, "video"), Limits())
    assert frame.shape == shown.shape == (96, 64, 3)
    assert np.abs(frame.astype(int) - shown).mean() < 1


def test_an_element_video_cannot_make_ffmpeg_fetch_anything(site, tmp_path):
    # An element's video is opened only as a known container (MP4/MOV, Matroska, AVI), never by
    # FFmpeg's own guess: a playlist (HLS) or a concat list names other files and URLs, which
    # FFmpeg would open itself, past the fetcher's guard. (This FFmpeg build already refused this
    # playlist when guessing; the allowlist does not depend on that.)
    from stillreel.media.resolve import decode_video_frame

    data, _ = _mp4(tmp_path)
    site.routes["/segment.mp4"] = (200, {"Content-Type": "video/mp4"}, data)
    playlist = (f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{site.url}/segment.mp4\n#EXT-X-ENDLIST\n").encode()
    err = _error(lambda: decode_video_frame(playlist, ("elements", 0, "video"), Limits()))
    assert err.error_type == "unsupported_video_format"
    assert "/segment.mp4" not in site.seen


def test_an_element_given_as_a_video_resolves_to_its_first_frame(tmp_path):
    from stillreel.endpoints.request_plan import PlannedElement

    data, frames = _mp4(tmp_path)
    first = frames[0]
    video = "data:video/mp4;base64," + base64.b64encode(data).decode()
    plan = Plan(None, (("p", 5),), 5, elements=(PlannedElement(None, (), None, video),
                                               PlannedElement(data_uri(PNG), (data_uri(PNG),), None, video)))
    with Fetcher(None, LOOPBACK) as fetcher:
        request = resolve(plan, fetcher)
    only_video, both = request.elements
    assert only_video.video_frame is only_video.frontal and only_video.frontal.shape == first.shape
    assert both.frontal.shape == (48, 64, 3) and both.video_frame.shape == first.shape
    assert len(both.references) == 1
