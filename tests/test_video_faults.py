"""Fault suite: unreadable videos on every decoding backend, and a backend the config cannot have.

A bad video is a :class:`VideoError` naming the file with a one-line cause, whatever decodes it,
so a step lists that clip and goes on with the next (which still reads); a ``video.backend``
outside the choices is one line and exit 2.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from conftest import gradient_video

from videostar.cli import main
from videostar.errors import VideoError
from videostar.video import BACKENDS, read_frames, write_video

pytestmark = [pytest.mark.fast, pytest.mark.faults]


def audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, Fraction(1, 8000)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("good") / "good.mp4", gradient_video(24, 32))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "auto"])
@pytest.mark.parametrize("make, cause", [
    (lambda good, bad: bad.write_bytes(b"\x00garbage" * 100), "cannot decode"),
    (lambda good, bad: bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2]), "cannot decode"),
    (lambda good, bad: bad.write_text("id,label\n1,cat\n"), "cannot decode"),
    (lambda good, bad: audio_only(bad), "cannot decode"),
    (lambda good, bad: bad.write_bytes(b""), "file is empty"),
    (lambda good, bad: None, "file not found"),
], ids=["garbage", "truncated", "text", "audio-only", "empty", "missing"])
def test_a_bad_video_is_a_one_line_per_clip_error(good, tmp_path, backend, make, cause):
    bad = tmp_path / "bad.mp4"
    make(good, bad)
    with pytest.raises(VideoError) as err:
        read_frames(bad, backend=backend)
    assert err.value.path == str(bad) and err.value.cause.startswith(cause)
    assert "\n" not in str(err.value)
    assert len(read_frames(good, backend=backend)) == 8  # the next clip reads


def test_an_unknown_backend_in_config_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("video: {backend: ffmpeg-cli}\n")
    assert main(["--config", str(config), "show", str(tmp_path / "none.jsonl")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("config error: ") and "video.backend" in line
    assert all(b in line for b in BACKENDS)
