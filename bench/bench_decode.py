"""Frame sampling throughput: decord 8-frame uniform sampling against full decoding with PyAV.

Ours is ``videostar.video.read_frames`` (decord, one thread, decodes and converts only what the
sampled frames need). The baseline decodes every frame of the video with PyAV
(``av.open(path).decode(video=0)``, each frame ``to_ndarray(format="rgb24")``) and then picks the
same uniformly sampled indices (``sample_indices`` on the decoded frame count), as a script that
loads the whole clip first does. Both must give the same pictures: the bench reports the mean
absolute pixel difference between the two decoders' frames at the same indices (0-255 scale;
small differences come from the two YUV->RGB conversions, not from different frames), and
whether the frame counts agree.

The mp4s are written here with ``write_video`` (not timed): a drifting gradient with moving
discs and light noise, so the codec has real work. The methods run ``--repeats`` rounds,
interleaved, over all videos and the best round of each is reported (the machine may be shared).

    python bench/bench_decode.py --videos 20 --frames 300 --size 256 --fps 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from videostar.data.records import write_json
from videostar.video import probe, read_frames, sample_indices, write_video

try:
    from tqdm import tqdm
except ImportError:  # progress is optional
    tqdm = None


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


def write_videos(folder: Path, count: int, frames: int, size: int, fps: float) -> list[Path]:
    items = range(count)
    items = tqdm(items, desc="write mp4s", unit="video") if tqdm else items
    return [write_video(folder / f"bench_{i:03d}.mp4", synthetic_frames(frames, size, i), fps)
            for i in items]


def pyav_full(path: Path, num_frames: int, offset: int = 0) -> tuple[np.ndarray, int]:
    """Baseline: decode and convert every frame, then pick the uniformly sampled ones.

    ``offset`` shifts the picked indices (untimed sanity check: the pixel difference between
    neighbouring frames shows how large a difference one wrong index would make).
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    indices = sample_indices(len(frames), fps, num_frames)
    return np.stack([frames[min(len(frames) - 1, i + offset)] for i in indices]), len(frames)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) if a.shape == b.shape else np.nan


def ours(path: Path, num_frames: int) -> np.ndarray:
    return read_frames(path, num_frames)


def time_round(name: str, fn, paths: list[Path], num_frames: int, desc: str) -> dict[str, Any]:
    bar = tqdm(total=len(paths), desc=desc, unit="video") if tqdm else None
    outputs = []
    elapsed = 0.0
    for path in paths:
        t0 = time.perf_counter()
        out = fn(path, num_frames)
        elapsed += time.perf_counter() - t0
        outputs.append(out)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return {"name": name, "elapsed": elapsed, "outputs": outputs}


def pyav_defaults(path: Path) -> dict[str, Any]:
    import av

    with av.open(str(path)) as container:
        ctx = container.streams.video[0].codec_context
        return {"codec": ctx.name, "thread_type": str(ctx.thread_type), "thread_count": ctx.thread_count}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=20, help="mp4s to write and decode")
    ap.add_argument("--frames", type=int, default=300, help="frames per video")
    ap.add_argument("--size", type=int, default=256, help="frame width and height (pixels)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--num-frames", type=int, default=8, help="frames sampled per video")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per method (best is kept)")
    ap.add_argument("--json", help="also write the summary to this file")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="videostar-bench-decode-") as tmp:
        paths = write_videos(Path(tmp), args.videos, args.frames, args.size, args.fps)
        mb = sum(p.stat().st_size for p in paths) / 2**20
        counts = [probe(p).num_frames for p in paths]
        ours(paths[0], args.num_frames)  # warm-up: imports, codec init, page cache
        pyav_full(paths[0], args.num_frames)
        rounds: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
        for r in range(args.repeats):
            rounds["ours"].append(time_round("ours", ours, paths, args.num_frames,
                                             f"decord 8-frame [{r + 1}/{args.repeats}]"))
            rounds["baseline"].append(time_round("baseline", pyav_full, paths, args.num_frames,
                                                 f"pyav full [{r + 1}/{args.repeats}]"))
        av_info = pyav_defaults(paths[0])
        shifted = [pyav_full(p, args.num_frames, offset=1)[0] for p in paths]

    best = {k: min(v, key=lambda x: x["elapsed"]) for k, v in rounds.items()}
    ours_frames = best["ours"]["outputs"]
    base_frames = [f for f, _ in best["baseline"]["outputs"]]
    base_counts = [n for _, n in best["baseline"]["outputs"]]
    diffs = [mean_abs_diff(a, b) for a, b in zip(ours_frames, base_frames, strict=True)]
    neighbour = [mean_abs_diff(a, b) for a, b in zip(ours_frames, shifted, strict=True)]
    shapes_agree = sum(a.shape == b.shape for a, b in zip(ours_frames, base_frames, strict=True))
    n = len(paths)
    ours_rate = n / best["ours"]["elapsed"]
    base_rate = n / best["baseline"]["elapsed"]
    summary = {
        "videos": n, "frames": args.frames, "size": args.size, "fps": args.fps,
        "num_frames": args.num_frames, "repeats": args.repeats, "total_mb": mb,
        "ours": {"name": "decord read_frames (uniform sampling)", "seconds": best["ours"]["elapsed"],
                 "seconds_all_rounds": [x["elapsed"] for x in rounds["ours"]], "videos_per_s": ours_rate},
        "baseline": {"name": "PyAV decode every frame to rgb24, then pick", **av_info,
                     "seconds": best["baseline"]["elapsed"],
                     "seconds_all_rounds": [x["elapsed"] for x in rounds["baseline"]],
                     "videos_per_s": base_rate},
        "speedup_ours_over_baseline": ours_rate / base_rate,
        "frame_counts_agree": sum(a == b for a, b in zip(counts, base_counts, strict=True)),
        "shapes_agree": shapes_agree,
        "mean_abs_diff": float(np.mean(diffs)),
        "max_video_mean_abs_diff": float(np.max(diffs)),
        "neighbour_frame_mean_abs_diff": float(np.mean(neighbour)),
    }

    print(f"\n{n} videos, {args.frames} frames {args.size}x{args.size} at {args.fps:g} fps "
          f"({mb:.1f} MiB), {args.num_frames} frames sampled, best of {args.repeats}")
    print(f"{'method':<34}{'seconds':>9}{'videos/s':>10}{'ratio':>8}")
    print(f"{'decord read_frames (ours)':<34}{best['ours']['elapsed']:>9.2f}{ours_rate:>10.2f}"
          f"{summary['speedup_ours_over_baseline']:>7.1f}x")
    print(f"{'PyAV full decode (baseline)':<34}{best['baseline']['elapsed']:>9.2f}{base_rate:>10.2f}"
          f"{1.0:>7.1f}x")
    print(f"frame counts agree: {summary['frame_counts_agree']}/{n}; sampled shapes agree: "
          f"{shapes_agree}/{n}; mean |decord - PyAV| = {summary['mean_abs_diff']:.3f} "
          f"(worst video {summary['max_video_mean_abs_diff']:.3f}) on 0-255; "
          f"off by one frame it would be {summary['neighbour_frame_mean_abs_diff']:.3f}")
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
