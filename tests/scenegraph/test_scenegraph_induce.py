"""STEP induction from raw videos through a real (random, untrained) tiny model: what it says
cannot be parsed, and that is counted and kept, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videostar.cli import main
from videostar.model import save_model
from videostar.tiny import build_random
from videostar.video import write_video


def test_step_induce_keeps_unparseable_outputs(tmp_path: Path):
    model = tmp_path / "random"
    save_model(build_random(0, step=True), model, "pretrained", {})
    videos = tmp_path / "videos"
    for i in range(2):
        write_video(videos / f"raw{i}.mp4", np.full((16, 32, 32, 3), 40 * i, dtype=np.uint8), 8.0)
    (videos / "broken.mp4").write_bytes(b"not a video")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("generate: {max_new_tokens: 8, batch_size: 2}\n")
    out = tmp_path / "out"
    assert main(["--config", str(cfg), "data", "scenegraph-induce", "--model", str(model),
                 "--videos", str(videos), "--clip-seconds", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "induced.jsonl").read_text().splitlines()]
    stats = json.loads((out / "induce_summary.json").read_text())
    assert len(rows) == 4 and {r["clip"] for r in rows} == {0, 1}  # 2 s videos, 1 s clips
    assert stats["clips"] == 4 and stats["unparseable_clips"] == sum(not r["triples"] for r in rows)
    assert any(e.startswith("broken.mp4: ") for e in stats["errors"])
    assert all(isinstance(r["output"], str) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == len((out / "records.jsonl").read_text().splitlines())
    assert len(json.loads((out / "graphs.json").read_text())) == stats["graphs"]
