"""Range labels: a normalized temporal range and a bounding box, each matched by IoU against
every run of consecutive answer numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from videostar.verify.registry import MalformedLabel, Verifier, as_numbers, register
from videostar.verify.text import answer_numbers, fractions


def interval_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """1-D IoU; two identical points count as a perfect match."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union <= 0:
        return 1.0 if tuple(a) == tuple(b) else 0.0
    return inter / union


@register("temporal_range")
class TemporalRangeVerifier(Verifier):
    """[start, end] normalized: some pair of consecutive answer numbers has IoU > range_iou."""

    def parse(self, value: Any) -> list[float]:
        start, end = as_numbers(value, 2)
        if not 0 <= start <= end <= 1:
            raise MalformedLabel(f"expected 0 <= start <= end <= 1, got {value!r:.60}")
        return [start, end]

    def judge(self, answer: str, value: list[float], name: str) -> tuple[bool, str]:
        numbers = np.asarray(fractions(answer, grouped=False), dtype=float)
        if len(numbers) < 2:
            return False, "fewer than two numbers in the answer"
        # Every consecutive pair at once (numpy: an answer may hold 10^5 numbers), the same
        # rule as interval_iou; argmax keeps the first best pair, as max() did.
        lo, hi = np.minimum(numbers[:-1], numbers[1:]), np.maximum(numbers[:-1], numbers[1:])
        inter = np.clip(np.minimum(hi, value[1]) - np.maximum(lo, value[0]), 0, None)
        union = np.maximum(hi, value[1]) - np.minimum(lo, value[0])
        same = (lo == value[0]) & (hi == value[1])
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), same.astype(float))
        k = int(np.argmax(ious))
        best, iou = (float(lo[k]), float(hi[k])), float(ious[k])
        ok = iou > self.cfg.range_iou
        shown = f"[{best[0]:g}, {best[1]:g}]"
        return ok, f"range {shown} has IoU {iou:.2f} with [{value[0]:g}, {value[1]:g}]"


def to_xyxy(box: Sequence[float], fmt: str) -> tuple[float, float, float, float]:
    """Corners of a box given as xyxy, xywh (top-left + size) or cxcywh (centre + size)."""
    a, b, c, d = box
    if fmt == "xywh":
        return a, b, a + c, b + d
    if fmt == "cxcywh":
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if fmt == "xyxy":
        return a, b, c, d
    raise MalformedLabel(f"unknown box format {fmt!r}")


@register("bbox")
class BoxVerifier(Verifier):
    """A box in ``bbox_format``: 4 consecutive answer numbers, read alike, with IoU > bbox_iou."""

    def parse(self, value: Any) -> tuple[float, float, float, float]:
        box = to_xyxy(as_numbers(value, 4), self.cfg.bbox_format)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise MalformedLabel(f"box {value!r:.60} has no area in {self.cfg.bbox_format}")
        return box

    def judge(self, answer: str, value: tuple[float, ...], name: str) -> tuple[bool, str]:
        numbers = np.asarray([v for v, _, _, _ in answer_numbers(answer, grouped=False)], dtype=float)
        fmt = self.cfg.bbox_format
        if len(numbers) < 4:
            return False, "fewer than four numbers in the answer"
        # Every run of 4 consecutive numbers at once (numpy: an answer may hold 10^5 numbers),
        # IoU as torchvision's box_iou (a box without area has IoU 0); argmax keeps the first best.
        windows = np.lib.stride_tricks.sliding_window_view(numbers, 4)
        x0, y0, x1, y1 = to_xyxy(windows.T, fmt)
        inter = (np.clip(np.minimum(x1, value[2]) - np.maximum(x0, value[0]), 0, None)
                 * np.clip(np.minimum(y1, value[3]) - np.maximum(y0, value[1]), 0, None))
        area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        union = area + (value[2] - value[0]) * (value[3] - value[1]) - inter
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        k = int(np.argmax(ious))
        best, iou = windows[k], float(ious[k])
        shown = ", ".join(f"{x:g}" for x in best)
        return iou > self.cfg.bbox_iou, f"box [{shown}] ({fmt}) has IoU {iou:.2f} with the label"
