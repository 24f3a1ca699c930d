"""torchcodec, decord and PyAV return the same frames at the same times (issue 28, item 1).

Every video here stamps its frame index into its pixels (8 black-or-white blocks, one bit each),
so a frame read back names which frame it is: a backend that is one frame off, reorders B-frames
or drops a frame of a variable-frame-rate stream fails on the index, not on a pixel tolerance.
The videos are built here with PyAV: the writer the suite's own videos come from
(``write_video``), H.264 with B-frames, variable frame rates in MP4 and Matroska (with B-frames),
MPEG-4 Part 2 in AVI and lossless VP9 in WebM. Bad videos on each backend: tests/test_video_faults.py.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from videostar.video import BACKENDS, probe, read_clips, read_frames, resolve_backend, write_video

pytestmark = pytest.mark.fast

DECODERS = [b for b in BACKENDS if b != "auto"]
COUNT, SIZE = 40, 64
VFR_STEPS_MS = (40, 120, 80, 200)
"""Frame durations of the variable-frame-rate streams, in turn (milliseconds)."""


def stamped(i: int) -> np.ndarray:
    """Frame ``i``: its index in binary as 8 blocks of 16x16 (top half), colours below."""
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    for bit in range(8):
        row, col = divmod(bit, 4)
        if i >> bit & 1:
            frame[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = 255
    frame[32:, :, 0] = (i * 7) % 256
    frame[32:, :, 1] = np.linspace(0, 255, SIZE, dtype=np.uint8)
    frame[32:, :, 2] = (i * 29) % 256
    return frame


def stamp_of(frame: np.ndarray) -> int:
    """The index a decoded frame carries (the centre of each block, thresholded)."""
    bits = [frame[r * 16 + 4:r * 16 + 12, c * 16 + 4:c * 16 + 12].mean() > 128
            for r, c in (divmod(b, 4) for b in range(8))]
    return sum(1 << b for b, on in enumerate(bits) if on)


def encode(path: Path, codec: str, options: dict[str, str], vfr: bool = False) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(8))
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = options
        if vfr:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(COUNT):
            frame = av.VideoFrame.from_ndarray(stamped(i), format="rgb24")
            if vfr:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += VFR_STEPS_MS[i % len(VFR_STEPS_MS)]
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stamped")
    out = {
        "write_video": write_video(root / "suite.mp4", np.stack([stamped(i) for i in range(COUNT)])),
        "h264-bframes": encode(root / "bframes.mp4", "libx264",
                               {"crf": "10", "bf": "3", "b_strategy": "0", "g": "12"}),
        "vfr-mp4": encode(root / "vfr.mp4", "libx264", {"qp": "0", "preset": "veryfast"}, vfr=True),
        "vfr-bframes-mkv": encode(root / "vfr.mkv", "libx264", {"crf": "10", "bf": "2"}, vfr=True),
        "mpeg4-avi": encode(root / "mpeg4.avi", "mpeg4", {"qscale": "2"}),
        "vp9-webm": encode(root / "vp9.webm", "libvpx-vp9", {"lossless": "1"}),
    }
    return out


def stream_facts(path: Path) -> tuple[bool, set[int]]:
    """(has B-frames, the set of frame durations in its time base) as the container says."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        has_b = bool(stream.codec_context.has_b_frames)
        pts = sorted(p.pts for p in container.demux(stream) if p.size)
    return has_b, set(np.diff(pts).tolist())


def test_the_videos_are_what_they_claim(videos):
    assert stream_facts(videos["h264-bframes"])[0] and stream_facts(videos["vfr-bframes-mkv"])[0]
    for name in ("vfr-mp4", "vfr-bframes-mkv"):
        assert len(stream_facts(videos[name])[1]) == len(set(VFR_STEPS_MS)), name
    assert len(stream_facts(videos["write_video"])[1]) == 1


def test_auto_prefers_torchcodec_here():
    """`make system-deps` installs FFmpeg's shared libraries, so torchcodec loads."""
    assert resolve_backend("auto") == "torchcodec"


@pytest.mark.parametrize("name", ["write_video", "h264-bframes", "vfr-mp4", "vfr-bframes-mkv",
                                  "mpeg4-avi", "vp9-webm"])
def test_every_backend_returns_every_frame_in_order(videos, name):
    path = videos[name]
    infos = {b: probe(path, b) for b in DECODERS}
    assert {(i.num_frames, i.fps) for i in infos.values()} == {(COUNT, infos["decord"].fps)}, infos
    decoded = {b: read_frames(path, num_frames=COUNT, max_frames=COUNT, backend=b) for b in DECODERS}
    for backend, frames in decoded.items():
        assert [stamp_of(f) for f in frames] == list(range(COUNT)), f"{backend} on {name}"
        assert frames.indices == tuple(range(COUNT)) and frames.times == decoded["decord"].times
    for backend in ("torchcodec", "pyav"):  # one FFmpeg colour conversion each: equal here
        diff = np.abs(decoded[backend].astype(int) - decoded["decord"]).max()
        assert diff <= 2, f"{backend} vs decord on {name}: pixels differ by up to {diff}"


@pytest.mark.parametrize("name", ["h264-bframes", "vfr-mp4", "vfr-bframes-mkv"])
@pytest.mark.parametrize("kwargs", [{"num_frames": 5, "start": 1.0, "end": 3.0},
                                    {"fps": 3.0, "start": 0.5},
                                    {"num_frames": 12},
                                    {"num_frames": 60}])  # more than the 40 frames: repeats
def test_sampled_frames_and_their_times_agree(videos, name, kwargs):
    """Uniform, fps and segment sampling, and more frames than the video has (an index asked
    twice): the same frame indices, times and span everywhere."""
    reads = {b: read_frames(videos[name], backend=b, **kwargs) for b in DECODERS}
    ref = reads["decord"]
    first = round(kwargs.get("start", 0) * ref.fps)
    assert [stamp_of(f) for f in ref] == [first + i for i in ref.indices]
    for backend, frames in reads.items():
        assert [stamp_of(f) for f in frames] == [stamp_of(f) for f in ref], backend
        assert (frames.fps, frames.indices, frames.span, frames.times) == \
               (ref.fps, ref.indices, ref.span, ref.times), backend


def test_clips_agree(videos):
    clips = {b: read_clips(videos["vfr-bframes-mkv"], num_clips=3, frames_per_clip=4, backend=b)
             for b in DECODERS}
    stamps = {b: [[stamp_of(f) for f in clip] for clip in c] for b, c in clips.items()}
    assert stamps["torchcodec"] == stamps["decord"] == stamps["pyav"]
    assert [s[0] for s in stamps["decord"]] == [1, 14, 27]
