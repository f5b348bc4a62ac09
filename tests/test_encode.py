"""The shared MP4 encoder: container facts on real files, audio, streaming, failure cleanup."""

from __future__ import annotations

import weakref
from fractions import Fraction

import av
import numpy as np
import pytest
from videocheck import decode, fractal_image, probe, psnr, top_atoms

from stillreel.engines.base import Audio, Cancelled, Clip
from stillreel.media.encode import encode, rgb_to_yuv420p, yuv420p_to_rgb

W, H = 320, 192


def _moving(n: int, seed: int = 0) -> list[np.ndarray]:
    img = fractal_image(W + n * 2, H, seed)
    return [np.ascontiguousarray(img[:, 2 * i : 2 * i + W]) for i in range(n)]


def test_container_facts_h264_high_yuv420p_bt709_faststart(tmp_path):
    frames = _moving(48)
    facts = encode(Clip(24, W, H, 48, iter(frames), "rgb24"), tmp_path / "a.mp4")
    info = probe(tmp_path / "a.mp4")
    assert (info["codec"], info["profile"], info["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (info["width"], info["height"], info["fps"], info["frames"]) == (W, H, 24.0, 48)
    assert info["duration"] == pytest.approx(2.0, abs=1e-6)
    assert (info["colorspace"], info["color_primaries"], info["color_trc"]) == (1, 1, 1)  # BT.709
    assert info["faststart"] and info["audio"] is None
    assert facts["frames"] == 48 and facts["bytes"] == (tmp_path / "a.mp4").stat().st_size
    assert facts["seconds"] == 2.0 and facts["content_type"] == "video/mp4"


def test_faststart_check_fails_on_a_plain_mp4(tmp_path):
    # Negative control for the faststart check: PyAV without +faststart writes moov last.
    path = tmp_path / "plain.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i, f in enumerate(_moving(12)):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    atoms = top_atoms(path)
    assert atoms.index("moov") > atoms.index("mdat")
    assert probe(path)["faststart"] is False


def test_decoded_frames_match_the_input_frames(tmp_path):
    frames = _moving(24, seed=3)
    encode(Clip(24, W, H, 24, iter(frames), "rgb24"), tmp_path / "a.mp4")
    decoded = decode(tmp_path / "a.mp4")
    assert len(decoded) == 24
    assert min(psnr(a, b) for a, b in zip(decoded, frames)) >= 30
    # Negative control: against the wrong frames the same check fails.
    assert psnr(decoded[0], frames[-1]) < 30


def test_yuv420p_frames_are_accepted_and_keep_their_colours(tmp_path):
    rgb = fractal_image(W, H, 5)
    i420 = rgb_to_yuv420p(rgb)
    assert i420.shape == (H * 3 // 2, W)
    assert psnr(yuv420p_to_rgb(i420), rgb) >= 30
    encode(Clip(24, W, H, 3, iter([i420] * 3), "yuv420p"), tmp_path / "y.mp4")
    assert psnr(decode(tmp_path / "y.mp4")[0], yuv420p_to_rgb(i420)) >= 33


def test_audio_track_is_aac_and_as_long_as_the_video(tmp_path):
    t = np.arange(int(48000 * 2.7)) / 48000  # longer than the video: trimmed
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    clip = Clip(24, W, H, 48, iter(_moving(48)), "rgb24", audio=Audio(np.stack([tone, tone]), 48000))
    facts = encode(clip, tmp_path / "a.mp4")
    info = probe(tmp_path / "a.mp4")
    assert facts["audio"] and info["audio"]["codec"] == "aac" and info["audio"]["rate"] == 48000
    assert abs(info["audio"]["duration"] - info["duration"]) <= 0.05
    assert info["faststart"]
    with av.open(str(tmp_path / "a.mp4")) as c:
        pcm = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    assert 0.1 < np.abs(pcm).max() < 0.3  # the tone came through


def test_short_mono_audio_is_padded(tmp_path):
    clip = Clip(24, W, H, 24, iter(_moving(24)), "rgb24", audio=Audio(np.zeros(8000, np.float32), 16000))
    encode(clip, tmp_path / "a.mp4")
    info = probe(tmp_path / "a.mp4")
    assert abs(info["audio"]["duration"] - 1.0) <= 0.05


def test_wrong_frame_count_is_an_error_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="frame_count"):
        encode(Clip(24, W, H, 10, iter(_moving(8)), "rgb24"), tmp_path / "a.mp4")
    assert not (tmp_path / "a.mp4").exists()


def test_wrong_frame_shape_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="expected uint8"):
        encode(Clip(24, W, H, 2, iter([np.zeros((H, W), np.uint8)] * 2), "rgb24"), tmp_path / "a.mp4")
    assert not (tmp_path / "a.mp4").exists()


def test_an_exception_from_the_frames_propagates_and_closes_the_iterator(tmp_path):
    closed = []

    def frames():
        try:
            yield from _moving(5)
            raise Cancelled()
        finally:
            closed.append(True)

    with pytest.raises(Cancelled):
        encode(Clip(24, W, H, 20, frames(), "rgb24"), tmp_path / "a.mp4")
    assert closed and not (tmp_path / "a.mp4").exists()


def test_frames_are_streamed_not_collected(tmp_path):
    # Memory must not grow with duration: when frame k is pulled, the frames before it have been
    # handed to x264 and released by the encoder.
    refs, alive_at_pull = [], []

    def frames():
        for f in _moving(30):
            alive_at_pull.append(sum(r() is not None for r in refs))
            frame = f.copy()
            refs.append(weakref.ref(frame))
            yield frame

    encode(Clip(24, W, H, 30, frames(), "rgb24"), tmp_path / "a.mp4")
    assert max(alive_at_pull) <= 1
    # Negative control: a consumer that collects the frames keeps them all alive.
    refs.clear(), alive_at_pull.clear()
    kept = list(frames())
    assert max(alive_at_pull) == 29 and len(kept) == 30


def test_same_frames_same_bytes(tmp_path):
    # Several times in one process: x264's AVX-512 code gave a different file now and then (on AMD
    # Zen 4), most often for the first encode of a process; encode() keeps x264 on AVX2 there.
    names = [f"clip{i}.mp4" for i in range(8)]
    for name in names:
        encode(Clip(24, W, H, 24, iter(_moving(24)), "rgb24"), tmp_path / name)
    assert len({(tmp_path / name).read_bytes() for name in names}) == 1
    encode(Clip(24, W, H, 24, iter(_moving(24, seed=1)), "rgb24"), tmp_path / "c.mp4")
    assert (tmp_path / "c.mp4").read_bytes() != (tmp_path / names[0]).read_bytes()
