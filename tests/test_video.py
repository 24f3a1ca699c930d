from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_video
from PIL import Image

from videostar.errors import VideoError
from videostar.video import probe, read_clips, read_frames, sample_indices, write_video


def test_sample_indices_uniform_centres():
    assert sample_indices(80, 8.0, count=8) == [5, 15, 25, 35, 45, 55, 65, 75]


def test_sample_indices_segment_and_fps():
    # 10 s at 10 fps; segment [2, 4) s is frames 20..39; 2 frames per second -> 4 frames
    idx = sample_indices(100, 10.0, start=2.0, end=4.0, sample_fps=2.0)
    assert len(idx) == 4 and min(idx) >= 20 and max(idx) <= 39
    assert idx == sorted(idx)


def test_sample_indices_fps_capped_by_max_frames():
    assert len(sample_indices(1000, 10.0, sample_fps=10.0, max_frames=16)) == 16


def test_sample_indices_empty_segment():
    assert sample_indices(10, 10.0, start=5.0, end=6.0) == []


@pytest.fixture()
def mp4(tmp_path: Path) -> Path:
    return write_video(tmp_path / "grad.mp4", gradient_video(24, 32), fps=8.0)


def test_probe_and_uniform_decode(mp4: Path):
    info = probe(mp4)
    assert info.num_frames == 24 and info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(3.0)
    frames = read_frames(mp4, num_frames=8)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    brightness = frames.mean(axis=(1, 2, 3))
    expected = np.array([1, 4, 7, 10, 13, 16, 19, 22]) * 255 / 23
    assert np.abs(brightness - expected).max() < 12  # lossy codec, same frames


def test_decode_segment(mp4: Path):
    frames = read_frames(mp4, num_frames=4, start=1.0, end=2.0)  # frames 8..15
    brightness = frames.mean(axis=(1, 2, 3))
    assert brightness.min() > 8 * 255 / 23 - 12 and brightness.max() < 15 * 255 / 23 + 12


def test_read_clips_cover_video_in_order(mp4: Path):
    clips = read_clips(mp4, num_clips=3, frames_per_clip=4)
    assert [c.shape[0] for c in clips] == [4, 4, 4]
    means = [c.mean() for c in clips]
    assert means == sorted(means)
    with pytest.raises(ValueError):
        read_clips(mp4, frames_per_clip=21)


def test_frame_folder_is_a_video(tmp_path: Path):
    folder = tmp_path / "dive"
    folder.mkdir()
    for i, frame in enumerate(gradient_video(12, 16)):
        Image.fromarray(frame).save(folder / f"{99995 + i:05d}.jpg")  # crosses 5 -> 6 digits
    frames = read_frames(folder, num_frames=3)
    assert frames.shape == (3, 16, 16, 3)
    assert list(frames.mean(axis=(1, 2, 3))) == sorted(frames.mean(axis=(1, 2, 3)))
    assert probe(folder).num_frames == 12


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_bytes(b"\x00garbage" * 100), "cannot decode"),
    ],
)
def test_unreadable_video_raises_typed_error(tmp_path: Path, make, cause):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoError) as err:
        read_frames(path)
    assert err.value.path == str(path) and cause in err.value.cause


def test_empty_frame_folder(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames"):
        read_frames(tmp_path / "empty")
