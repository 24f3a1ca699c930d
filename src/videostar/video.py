"""Video I/O: torchcodec, decord or PyAV decoding with uniform or fps sampling, frame folders,
clip segmentation.

Frames are uint8 arrays shaped T x H x W x C. Any failure to read a video (missing, empty,
corrupt, no frames in the asked segment) raises :class:`VideoError` with the path and cause,
so callers can report it and go on with the other records. The three backends (``video.backend``)
index frames the same way (presentation order, B-frames and variable frame rates included) and
report the same frame rate, so they return the same frames at the same times.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videostar.errors import ConfigError, VideoError, first_line

log = logging.getLogger(__name__)

FRAME_FOLDER_FPS = 25.0
"""Frame rate assumed for JPEG frame folders (FineDiving ships frames, not mp4s)."""

_FRAME_NAME = re.compile(r"^(\d+)\.jpe?g$", re.IGNORECASE)

BACKENDS = ("auto", "torchcodec", "decord", "pyav")
"""``video.backend`` values. ``auto``: torchcodec where it loads FFmpeg's shared libraries (what
transformers, vLLM and SGLang decode with), else decord, else PyAV (a dependency, always there)."""


class Frames(np.ndarray):
    """Sampled frames (T x H x W x C uint8) that remember when they were taken.

    The model needs the frames' real times: Qwen2.5-VL turns the sampling rate into
    ``second_per_grid_ts`` and temporal position ids, and bare arrays make the processor assume
    24 fps. An ndarray subclass keeps every ``list[np.ndarray]`` signature working while the
    times travel with the pixels; a slice or copy loses them (its times would be wrong).
    """

    fps: float | None
    indices: tuple[int, ...] | None
    span: int | None

    def __new__(cls, array: np.ndarray, fps: float, indices: list[int], span: int) -> Frames:
        obj = np.asarray(array).view(cls)
        obj.fps, obj.indices, obj.span = (fps if fps > 0 else None), tuple(indices), span
        return obj

    def __array_finalize__(self, obj: object) -> None:
        self.fps, self.indices, self.span = None, None, None

    @property
    def times(self) -> list[float] | None:
        """Seconds from the segment's start of each frame; None when the rate is unknown."""
        if self.fps is None or self.indices is None:
            return None
        return [i / self.fps for i in self.indices]


def frame_metadata(frames: np.ndarray):
    """The one place frames' timing becomes the processor's ``VideoMetadata``.

    ``sampled_fps`` (what Qwen2.5-VL's ``second_per_grid_ts`` derives from) is frames per
    second of the sampled segment. Frames without times (a bare array) get the processor's
    own assumption (``fps=None``: 24 fps).
    """
    from transformers.video_utils import VideoMetadata

    if isinstance(frames, Frames) and frames.fps is not None and frames.indices is not None:
        return VideoMetadata(total_num_frames=frames.span, fps=frames.fps,
                             frames_indices=list(frames.indices), duration=frames.span / frames.fps)
    return VideoMetadata(total_num_frames=len(frames), fps=None)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


class _Source:
    """A random-access frame source: a video file through one backend, or numbered JPEGs.

    ``fps`` is the container's average frame rate (FFmpeg's ``avg_frame_rate``, what decord
    reports), for every backend: the times of sampled frames derive from it.
    """

    num_frames: int
    fps: float

    def get(self, indices: list[int]) -> np.ndarray:
        raise NotImplementedError


@functools.cache
def resolve_backend(name: str) -> str:
    """The backend ``name`` stands for here (``auto`` resolved); one that cannot load is a
    configuration error naming why, raised before any video is read."""
    if name not in BACKENDS:
        raise ConfigError(f"video.backend: {name!r} is not one of {', '.join(BACKENDS)}")
    if name in ("auto", "torchcodec"):
        try:
            import torchcodec

            # torchcodec imports without FFmpeg and says so here (its decoders then fail)
            cause = None if torchcodec.ffmpeg_major_version else "FFmpeg's shared libraries not found"
        except ImportError as exc:
            cause = first_line(exc)
        if cause is None:
            return "torchcodec"
        if name == "torchcodec":
            raise ConfigError(f"video.backend: torchcodec does not load here ({cause}; "
                              "`make system-deps` installs FFmpeg)")
        log.info("video.backend auto: torchcodec does not load (%s)", cause)
    if name in ("auto", "decord"):
        try:
            import decord  # noqa: F401
            return "decord"
        except ImportError as exc:
            if name == "decord":
                raise ConfigError(f"video.backend: decord does not import ({first_line(exc)})") from exc
    return "pyav"


class _TorchcodecSource(_Source):
    def __init__(self, path: str):
        from torchcodec.decoders import VideoDecoder

        try:
            # exact: the file is scanned once, so index i is the i-th frame in presentation
            # order (as decord indexes), also for variable frame rates; one thread, as decord.
            self._decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC",
                                         num_ffmpeg_threads=1)
            meta = self._decoder.metadata
        except Exception as exc:  # torchcodec raises RuntimeError / ValueError from FFmpeg
            raise VideoError(path, f"cannot decode ({first_line(exc)})") from exc
        self.path = path
        self.num_frames = meta.num_frames or 0
        # torchcodec's header rate is r_frame_rate (the base rate: 25 for a variable-rate stream
        # averaging 9.25) and its own average spans decoded content (9.25 where the container's
        # header says 8); the container's avg_frame_rate, the rate decord and PyAV report, is read
        # from the header by PyAV, so all three backends time frames alike.
        self.fps = _header_fps(path) or float(meta.average_fps or 0.0)

    def get(self, indices: list[int]) -> np.ndarray:
        try:
            return self._decoder.get_frames_at(indices).data.numpy()
        except Exception as exc:
            raise VideoError(self.path, f"cannot decode frames ({first_line(exc)})") from exc


def _header_fps(path: str) -> float:
    """The video stream's average frame rate as the container states it (0.0: none stated)."""
    import av

    try:
        with av.open(path) as container:
            rate = container.streams.video[0].average_rate
    except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:
        raise VideoError(path, f"cannot decode ({first_line(exc)})") from exc
    return float(rate) if rate else 0.0


class _PyAVSource(_Source):
    """Frames in decode order from the start: PyAV has no frame-index seek that is exact on
    every stream, so it decodes up to the last asked frame (as transformers' PyAV reader does)."""

    def __init__(self, path: str):
        import av

        self.path = path
        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                # one packet per frame: counted without decoding, as decord builds its index
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:
            cause = "no video stream" if isinstance(exc, IndexError) else first_line(exc)
            raise VideoError(path, f"cannot decode ({cause})") from exc
        self.fps = _header_fps(path)

    def get(self, indices: list[int]) -> np.ndarray:
        import av

        wanted, found = set(indices), {}
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_count = 1
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        found[i] = frame.to_ndarray(format="rgb24")
                    if i >= max(wanted):
                        break
        except av.FFmpegError as exc:
            raise VideoError(self.path, f"cannot decode frames ({first_line(exc)})") from exc
        if len(found) < len(wanted):
            raise VideoError(self.path, f"cannot decode frame {min(wanted - set(found))} "
                                        f"(the stream ends after {len(found)} of those asked)")
        return np.stack([found[i] for i in indices])


class _DecordSource(_Source):
    def __init__(self, path: str):
        import decord

        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:  # decord raises its own DECORDError / RuntimeError variants
            raise VideoError(path, f"cannot decode ({first_line(exc)})") from exc
        self.path = path
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps() or 0.0)

    def get(self, indices: list[int]) -> np.ndarray:
        try:
            return self._reader.get_batch(indices).asnumpy()
        except Exception as exc:
            raise VideoError(self.path, f"cannot decode frames ({first_line(exc)})") from exc


class _FolderSource(_Source):
    def __init__(self, path: str):
        names = [n for n in os.listdir(path) if _FRAME_NAME.match(n)]
        self.path = path
        self._files = sorted(names, key=lambda n: int(_FRAME_NAME.match(n).group(1)))
        self.num_frames = len(self._files)
        self.fps = FRAME_FOLDER_FPS

    def get(self, indices: list[int]) -> np.ndarray:
        from PIL import Image

        frames = []
        for i in indices:
            file = os.path.join(self.path, self._files[i])
            try:
                with Image.open(file) as img:
                    frames.append(np.asarray(img.convert("RGB")))
            except Exception as exc:
                raise VideoError(file, f"cannot decode frame ({first_line(exc)})") from exc
        if len({f.shape for f in frames}) > 1:
            raise VideoError(self.path, "frames differ in size")
        return np.stack(frames)


_SOURCES: dict[str, type[_Source]] = {"torchcodec": _TorchcodecSource, "decord": _DecordSource,
                                      "pyav": _PyAVSource}


def _open(path: str | os.PathLike, backend: str = "auto") -> _Source:
    path = os.fspath(path)
    kind = resolve_backend(backend)
    if not os.path.exists(path):
        raise VideoError(path, "file not found")
    if os.path.isdir(path):
        source: _Source = _FolderSource(path)
    elif os.path.getsize(path) == 0:
        raise VideoError(path, "file is empty")
    else:
        source = _SOURCES[kind](path)
    if source.num_frames == 0:
        raise VideoError(path, "no frames")
    return source


def probe(path: str | os.PathLike, backend: str = "auto") -> VideoInfo:
    """Frame count and rate, opening the container without decoding the frames."""
    src = _open(path, backend)
    return VideoInfo(os.fspath(path), src.num_frames, src.fps)


def segment_bounds(num_frames: int, fps: float, start: float | None, end: float | None
                   ) -> tuple[int, int]:
    """First and last frame index inside [start, end] seconds (last < first: empty)."""
    first, last = 0, num_frames - 1
    if fps > 0 and start is not None:
        first = max(first, int(round(start * fps)))
    if fps > 0 and end is not None:
        last = min(last, int(round(end * fps)) - 1)
    return first, last


def sample_indices(
    num_frames: int,
    fps: float,
    count: int = 8,
    start: float | None = None,
    end: float | None = None,
    sample_fps: float | None = None,
    max_frames: int = 32,
) -> list[int]:
    """Frame indices inside [start, end] seconds: ``count`` uniform ones, or ``sample_fps`` per second.

    Uniform sampling takes the centre of each of ``count`` equal bins (as Video-LLaVA does), so
    the first and last frames of a long segment are not over-represented.
    """
    first, last = segment_bounds(num_frames, fps, start, end)
    if last < first:
        return []
    span = last - first + 1
    if sample_fps is not None and fps > 0:
        count = max(1, min(max_frames, int(span / fps * sample_fps)))
    bins = np.linspace(first, last + 1, count + 1)
    centres = (bins[:-1] + bins[1:]) / 2
    return [min(last, int(c)) for c in centres]


def read_frames(
    path: str | os.PathLike,
    num_frames: int = 8,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    max_frames: int = 32,
    max_pixels: int | None = None,
    backend: str = "auto",
) -> Frames:
    """Decode only the sampled frames of a video file or frame folder, with their times;
    frames over ``max_pixels`` are downscaled (see :func:`cap_pixels`). ``backend``: one of
    :data:`BACKENDS` (``video.backend``)."""
    src = _open(path, backend)
    indices = sample_indices(src.num_frames, src.fps, num_frames, start, end, fps, max_frames)
    if not indices:
        raise VideoError(os.fspath(path), f"no frames in segment [{start}, {end}] s")
    first, last = segment_bounds(src.num_frames, src.fps, start, end)
    pixels = cap_pixels(src.get(indices), max_pixels, os.fspath(path))
    return Frames(pixels, src.fps, [i - first for i in indices], last - first + 1)


def cap_pixels(frames: np.ndarray, max_pixels: int | None, where: str) -> np.ndarray:
    """Downscale frames above ``max_pixels`` each (aspect kept), logging one line saying so.

    A 1080p frame costs Qwen2.5-VL ~2.6k tokens before the processor's own cap; the cap here is
    ours, explicit and reported, so memory at 7B is bounded by configuration.
    """
    height, width = frames.shape[1:3]
    if max_pixels is None or height * width <= max_pixels:
        return frames
    from PIL import Image

    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    log.warning("%s: frames %dx%d over video.max_pixels %d; resized to %dx%d",
                where, width, height, max_pixels, *size)
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) for f in frames])


def read_clips(
    path: str | os.PathLike, num_clips: int = 3, frames_per_clip: int = 8, backend: str = "auto"
) -> list[Frames]:
    """Split a video into ``num_clips`` equal consecutive clips and sample each uniformly.

    Used for the RLAIF narrative: captions of several clips describe a video better than one.
    """
    if not 1 <= frames_per_clip <= 20:
        raise ValueError("frames_per_clip must be between 1 and 20")
    src = _open(path, backend)
    bounds = np.linspace(0, src.num_frames, num_clips + 1).astype(int)
    clips = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi <= lo:
            continue
        indices = sample_indices(hi - lo, 0.0, min(frames_per_clip, hi - lo))
        clips.append(Frames(src.get([lo + i for i in indices]), src.fps, indices, hi - lo))
    return clips


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Encode T x H x W x 3 uint8 frames as an mp4 (H.264 when available, else MPEG-4 Part 2).

    Written to a temporary name first and renamed, so a crash never leaves a truncated mp4.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    height, width = frames.shape[1:3]
    with av.open(str(tmp), mode="w") as container:
        stream = _video_stream(container, fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            # Single-threaded colour conversion and encoding: with threads, the bytes (and so
            # the decoded pixels) vary from run to run, and a seed must pin the demo's data.
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def _video_stream(container, fps: float):
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1000)
    try:
        stream = container.add_stream("libx264", rate=rate)
        stream.options = {"qp": "0", "preset": "veryfast"}
        stream.thread_count = 1
    except Exception:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.bit_rate = 2_000_000
        stream.thread_count = 1
    return stream
