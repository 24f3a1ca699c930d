"""Frame sampling throughput of the three decoding backends: torchcodec : decord : PyAV, one run.

Each backend runs ``videostar.video.read_frames(path, 8, backend=...)``, what every step calls:
torchcodec and decord seek to the keyframe before each sampled frame and decode from there
(one thread each); PyAV decodes in order up to the last sampled frame (it has no frame-exact
seek, as transformers' PyAV reader). Three sets of mp4s, written here with ``write_video`` or
PyAV (not timed), show where each is faster:

- ``long``: 300 frames of 256x256, one keyframe per 250 frames (x264's default GOP), so seeking
  saves little: most frames up to the last sampled one are decoded anyway;
- ``gop30``: the same frames with a keyframe every 30 frames, as cameras and web videos write
  them, so a seek skips most of the video;
- ``short``: 24 frames of 64x64, the test suite's clips, where opening the file dominates.

The content is a drifting gradient with moving discs and light noise, so the codec has real work.
All backends must give the same pictures: the bench reports the frame counts' agreement and the
mean absolute pixel difference of each backend's frames against decord's (0-255). Methods run
``--repeats`` rounds, interleaved, and the best round of each is kept (the machine may be shared).

    python bench/bench_decode.py --videos 10 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from videostar.data.records import write_json
from videostar.video import BACKENDS, probe, read_frames, write_video

DECODERS = [b for b in BACKENDS if b != "auto"]
SETS = {"long": (300, 256, None), "gop30": (300, 256, 30), "short": (24, 64, None)}
"""Set name -> (frames, size, keyframe interval: None for x264's default via write_video)."""


def synthetic_frames(frames: int, size: int, seed: int) -> np.ndarray:
    """A panning colour gradient with three moving discs and +-6 noise, T x H x W x 3 uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    phase = rng.uniform(0, 2 * np.pi, 3)
    centres = rng.uniform(0.2, 0.8, (3, 2))
    speeds = rng.uniform(-0.004, 0.004, (3, 2))
    colours = rng.integers(40, 255, (3, 3))
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        shift = t / frames
        img = np.stack([
            127 + 100 * np.sin(2 * np.pi * (xx + shift) + phase[0]),
            127 + 100 * np.sin(2 * np.pi * (yy - shift) + phase[1]),
            127 + 100 * np.sin(2 * np.pi * (xx + yy + 0.5 * shift) + phase[2]),
        ], axis=-1)
        for (cx, cy), (vx, vy), colour in zip(centres, speeds, colours, strict=True):
            px, py = (cx + vx * t) % 1.0, (cy + vy * t) % 1.0
            img[(xx - px) ** 2 + (yy - py) ** 2 <= 0.12**2] = colour
        img += rng.integers(-6, 7, img.shape)
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_gop(path: Path, frames: np.ndarray, fps: float, gop: int) -> Path:
    """H.264 as ``write_video`` writes it (qp 0, one thread) with a keyframe every ``gop`` frames
    (``write_video`` keeps x264's default; a camera's short GOP needs its own writer)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qp": "0", "preset": "veryfast", "g": str(gop), "keyint_min": str(gop)}
        stream.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_set(folder: Path, name: str, count: int, fps: float) -> list[Path]:
    frames, size, gop = SETS[name]
    paths = []
    for i in range(count):
        pixels = synthetic_frames(frames, size, i)
        path = folder / f"{name}_{i:03d}.mp4"
        paths.append(write_video(path, pixels, fps) if gop is None else write_gop(path, pixels, fps, gop))
    return paths


def timed(backend: str, paths: list[Path], num_frames: int) -> tuple[float, list[np.ndarray]]:
    outputs, elapsed = [], 0.0
    for path in paths:
        t0 = time.perf_counter()
        outputs.append(read_frames(path, num_frames, backend=backend))
        elapsed += time.perf_counter() - t0
    return elapsed, outputs


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) if a.shape == b.shape else np.nan


def bench_set(name: str, paths: list[Path], num_frames: int, repeats: int) -> dict[str, Any]:
    counts = {b: [probe(p, b).num_frames for p in paths] for b in DECODERS}
    for backend in DECODERS:  # warm-up: imports, codec init, page cache
        read_frames(paths[0], num_frames, backend=backend)
    rounds: dict[str, list[float]] = {b: [] for b in DECODERS}
    frames: dict[str, list[np.ndarray]] = {}
    for _ in range(repeats):
        for backend in DECODERS:
            elapsed, frames[backend] = timed(backend, paths, num_frames)
            rounds[backend].append(elapsed)
    n = len(paths)
    out: dict[str, Any] = {"videos": n, "frames": SETS[name][0], "size": SETS[name][1],
                           "gop": SETS[name][2] or 250,
                           "mib": sum(p.stat().st_size for p in paths) / 2**20}
    slowest = max(min(r) for r in rounds.values())
    for backend in DECODERS:
        best = min(rounds[backend])
        out[backend] = {
            "seconds": best, "seconds_all_rounds": rounds[backend], "videos_per_s": n / best,
            "ratio_to_slowest": slowest / best,
            "frame_counts_agree_with_decord": sum(a == b for a, b in zip(counts[backend], counts["decord"],
                                                                          strict=True)),
            "mean_abs_diff_to_decord": float(np.mean([mean_abs_diff(a, b) for a, b in
                                                      zip(frames[backend], frames["decord"], strict=True)])),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=10, help="mp4s per set")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--num-frames", type=int, default=8, help="frames sampled per video")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per backend (best is kept)")
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--json", help="also write the summary to this file")
    args = ap.parse_args(argv)

    summary: dict[str, Any] = {"num_frames": args.num_frames, "repeats": args.repeats, "fps": args.fps}
    with tempfile.TemporaryDirectory(prefix="videostar-bench-decode-") as tmp:
        for name in args.sets:
            paths = write_set(Path(tmp), name, args.videos, args.fps)
            summary[name] = bench_set(name, paths, args.num_frames, args.repeats)

    print(f"\n{args.num_frames} frames sampled per video (read_frames), best of {args.repeats} rounds; "
          "ratio torchcodec : decord : PyAV in videos/s, the slowest = 1")
    print(f"{'set':<34}" + "".join(f"{b + ' v/s':>15}" for b in DECODERS) + f"{'ratio':>20}")
    for name in args.sets:
        s = summary[name]
        label = f"{name}: {s['videos']} x {s['frames']} fr {s['size']}px gop {s['gop']}"
        ratio = " : ".join(f"{s[b]['ratio_to_slowest']:.2f}" for b in DECODERS)
        print(f"{label:<34}" + "".join(f"{s[b]['videos_per_s']:>15.1f}" for b in DECODERS) + f"{ratio:>20}")
    for name in args.sets:
        s = summary[name]
        agree = ", ".join(f"{b} {s[b]['frame_counts_agree_with_decord']}/{s['videos']} frame counts, "
                          f"|{b} - decord| {s[b]['mean_abs_diff_to_decord']:.3f}"
                          for b in DECODERS if b != "decord")
        print(f"{name}: {agree}")
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
