"""A cycle's self-generated training data in the formats other trainers read.

What a Video-STaR cycle produces is a dataset: the answers and hinted rationales the verifier
kept, which that cycle's SFT trained on. ``export`` writes them as LLaMA-Factory's ShareGPT video
layout (with the ``dataset_info.json`` it reads), LLaVA conversation JSON with ``<video>``, or a
Hugging Face ``datasets`` folder with a dataset card. Every row keeps where it came from (cycle,
step, the verifier's verdict); fields named in ``PASSTHROUGH`` (STEP's ``rationale_steps``)
travel unchanged.

A cycle is read from a local run folder (``locate_cycle`` is the one place that knows its
layout) or from the cycle's MLflow run, whose dataset input is the published training file.
"""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videostar import layout
from videostar.data.records import Record, read_rows, write_json
from videostar.errors import RecordError, VideostarError, first_line

FORMATS = ("hf", "llava", "sharegpt")
PASSTHROUGH = ("rationale_steps",)
"""Row fields exported as they are when present (STEP keeps its graph-path rationale steps)."""


@dataclass
class CycleData:
    """One cycle's verified rows and what the dataset card says about them."""

    cycle: int
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    base_model: str
    source: str
    num_frames: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class CycleFiles:
    """Where a local run keeps one cycle's outputs."""

    cycle: int
    summary: Path
    training: list[Path]
    model: Path


def locate_cycle(run_dir: str | Path, cycle: int | None = None) -> CycleFiles:
    """The files of ``cycle`` (``None``: the last) in a local run folder, through the file-layout
    contract: each cycle's decide task writes ``cycle.json`` (where its model and training data
    are) beside its ``summary.json``, wherever KFP put the task's folder."""
    run_dir = Path(run_dir)
    found = {json.loads(p.read_text())["cycle"]: p for p in run_dir.rglob(layout.CYCLE)}
    if not found:
        raise VideostarError(f"{run_dir}: no finished cycle (no {layout.CYCLE} below it)")
    k = max(found) if cycle is None else cycle
    if k not in found:
        raise VideostarError(f"{run_dir}: no cycle {k} (finished cycles: {sorted(found)})")
    produced = json.loads(found[k].read_text())
    return CycleFiles(k, found[k].parent / layout.SUMMARY, [Path(p) for p in produced["training_files"]],
                      Path(produced["model"]))


def parse_cycle(text: str) -> int | None:
    """``--cycle``: a number, or ``last`` (``None``)."""
    if text == "last":
        return None
    if not text.isdigit():
        raise VideostarError(f"--cycle: {text!r} is neither a cycle number nor 'last'")
    return int(text)


def read_local_cycle(run_dir: str | Path, cycle: int | None, num_frames: int | None = None) -> CycleData:
    """A cycle of a local run folder; the base model is the one its adapter's card names."""
    files = locate_cycle(run_dir, cycle)
    card = files.model / layout.MODEL_CARD
    base = json.loads(card.read_text()).get("base", "") if card.exists() else ""
    rows = [row for path in files.training for row in read_rows(path)]
    return CycleData(files.cycle, rows, json.loads(files.summary.read_text()), str(base),
                     f"{Path(run_dir).resolve()} cycle {files.cycle}", num_frames)


def read_mlflow_cycle(tracking_uri: str, run_id: str, cycle: int | None,
                      num_frames: int | None = None) -> CycleData:
    """A cycle of a tracked pipeline run (the parent run's id, or a cycle run's).

    The rows are the training file the cycle's run names as its dataset input (an ``s3://``
    object or a ``file:`` path of the store); yields come from the run's metrics.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from videostar.tracking import CYCLE_TAG

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise VideostarError(f"MLflow at {tracking_uri}: {first_line(exc)}") from exc
    parent = run.data.tags.get("mlflow.parentRunId", run_id) if CYCLE_TAG in run.data.tags else run_id
    if CYCLE_TAG in run.data.tags and cycle is None:
        cycle = int(run.data.tags[CYCLE_TAG])
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    cycles = {int(r.data.tags[CYCLE_TAG]): r for r in children if r.data.tags.get(CYCLE_TAG, "").isdigit()}
    if not cycles:
        raise VideostarError(f"MLflow run {parent}: no cycle runs")
    k = max(cycles) if cycle is None else cycle
    if k not in cycles:
        raise VideostarError(f"MLflow run {parent}: no cycle {k} (cycles: {sorted(cycles)})")
    found = cycles[k]
    inputs = [d.dataset for d in found.inputs.dataset_inputs]
    if not inputs:
        raise VideostarError(f"MLflow run {found.info.run_id} (cycle {k}): no training dataset logged")
    uri = json.loads(inputs[0].source).get("uri", "")
    metrics = found.data.metrics
    summary = {key: metrics[key] for key in ("answer_yield", "rationalization_yield", "total_yield")
               if key in metrics}
    params = client.get_run(parent).data.params
    frames = num_frames if num_frames is not None else int(params.get("video.num_frames", 0)) or None
    return CycleData(k, read_rows(_fetch(uri)), summary, found.data.tags.get("base_model", ""),
                     f"MLflow run {found.info.run_id} (cycle {k})", frames)


def _fetch(uri: str) -> Path:
    """A local copy of a published training file."""
    if uri.startswith("s3://"):
        from videostar.store import download_prefix

        folder, name = uri.rsplit("/", 1)  # the store publishes one file per step folder
        return download_prefix(folder) / name
    path = Path(uri.removeprefix("file://"))
    if not path.exists():
        raise VideostarError(f"{uri}: training data not found")
    return path


def reasons(verdict: dict[str, Any]) -> str:
    """The verifier's verdict in one line: why each label passed or failed."""
    if verdict.get("error"):
        return verdict["error"]
    return "; ".join(f"{name}: {v['reason']}" for name, v in verdict.get("labels", {}).items())


def verdict_examples(outputs: list[tuple[str, Path]], cycle: int, per_group: int = 5
                     ) -> dict[str, list[Any]]:
    """Up to ``per_group`` accepted and rejected rows per step, spread over each file, as table
    columns: what a user reads to see what the verifier kept and why it refused the rest.

    ``outputs``: (step, folder holding ``verified.jsonl`` / ``rejected.jsonl``) per step output.
    """
    columns: dict[str, list[Any]] = {k: [] for k in ("outcome", "step", "reasons", "answer", "question",
                                                     "task", "id", "cycle")}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for step, folder in outputs:
        for outcome, name in (("accepted", "verified.jsonl"), ("rejected", "rejected.jsonl")):
            groups.setdefault((step, outcome), []).extend(read_rows(Path(folder) / name))
    for (step, outcome), rows in groups.items():
        picked = [rows[i * len(rows) // per_group] for i in range(min(per_group, len(rows)))]
        for row in picked:
            values = {"cycle": cycle, "step": step, "outcome": outcome, "task": row.get("task", ""),
                      "id": row.get("id", ""), "question": row.get("question", ""),
                      "answer": row.get("answer", ""), "reasons": reasons(row.get("verdict", {}))}
            for key, value in values.items():
                columns[key].append(value)
    return columns


def _split_scheme(path: str) -> tuple[str, str]:
    """``s3://b/v.mp4`` -> (``s3://``, ``b/v.mp4``); a plain path has no scheme."""
    scheme, sep, rest = path.partition("://")
    return (scheme + sep, rest) if sep else ("", path)


def _video_root(videos: list[str]) -> str:
    """The deepest folder holding every video (a URI keeps its scheme)."""
    if not videos:
        return ""
    scheme = _split_scheme(videos[0])[0]
    paths = [_split_scheme(v)[1] for v in videos]
    return scheme + (posixpath.dirname(paths[0]) if len(paths) == 1 else posixpath.commonpath(paths))


def export_rows(data: CycleData, video_root: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The cycle's rows in the flat form every format derives from, and the videos' folder.

    Videos are made relative to their common folder, then joined to ``video_root`` when given
    (e.g. ``s3://bucket/videos`` or the folder a trainer mounts); a malformed row is reported in
    ``data.errors`` and left out.
    """
    records: list[tuple[Record, dict[str, Any]]] = []
    for i, row in enumerate(data.rows, 1):
        try:
            if not isinstance(row.get("answer"), str) or not row.get("verdict", {}).get("passed"):
                raise RecordError(f"record {row.get('id', '?')}: no verified answer")
            records.append((Record.from_json(row), row))
        except (RecordError, TypeError, AttributeError) as exc:
            data.errors.append(f"{data.source}: row {i}: {exc}")
    root = _video_root([rec.video for rec, _ in records])
    passthrough = [k for k in PASSTHROUGH if any(k in row for _, row in records)]
    out = []
    for rec, row in records:
        video = posixpath.relpath(_split_scheme(rec.video)[1], _split_scheme(root)[1])
        if video_root:
            video = posixpath.join(video_root, video)
        out.append({
            "id": rec.id, "video": video, "question": rec.question, "answer": row["answer"],
            "task": rec.task, "label_types": list(rec.label_type),
            "labels": json.dumps(rec.label, ensure_ascii=False),
            "start": rec.start, "end": rec.end, "num_frames": data.num_frames,
            "cycle": data.cycle, "step": row.get("prompt_kind", "answer"),  # answer or rationalization
            "verdict": reasons(row["verdict"]),
            **{k: row.get(k) for k in passthrough},
        })
    return out, root


def _conversation(row: dict[str, Any], token: str, roles: tuple[str, str, str, str]) -> list[dict[str, str]]:
    role, content, user, assistant = roles
    return [{role: user, content: f"{token}{row['question']}"}, {role: assistant, content: row["answer"]}]


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("question", "answer", "video")}


def write_sharegpt(rows: list[dict[str, Any]], out: Path, name: str) -> Path:
    """LLaMA-Factory's multimodal video layout (``data/mllm_video_demo.json``): ``messages`` in
    role/content form whose user turn holds one ``<video>``, and ``videos``; ``dataset_info.json``
    registers it as ``name``. The provenance fields ride along (LLaMA-Factory keeps only the
    columns it maps)."""
    file = f"{name}.json"
    roles = ("role", "content", "user", "assistant")
    write_json(out / file, [{"messages": _conversation(r, "<video>", roles), "videos": [r["video"]],
                             **_metadata(r)} for r in rows])
    write_json(out / "dataset_info.json", {name: {
        "file_name": file, "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant"}}})
    return out / file


def write_llava(rows: list[dict[str, Any]], out: Path, name: str) -> Path:
    """LLaVA / Video-LLaVA conversation JSON: ``id``, ``video``, and ``conversations`` whose human
    turn starts with ``<video>\\n`` (the video token the training code expands)."""
    file = out / f"{name}.json"
    write_json(file, [{"id": r["id"], "video": r["video"],
                       "conversations": _conversation(r, "<video>\n", ("from", "value", "human", "gpt")),
                       **{k: v for k, v in _metadata(r).items() if k != "id"}} for r in rows])
    return file


def _features(rows: list[dict[str, Any]]) -> Any:
    """Explicit column types, so an empty column (no segment, no frames) keeps its type."""
    from datasets import Features, Sequence, Value

    columns = {"id": Value("string"), "video": Value("string"), "question": Value("string"),
               "answer": Value("string"), "task": Value("string"), "label_types": Sequence(Value("string")),
               "labels": Value("string"), "start": Value("float64"), "end": Value("float64"),
               "num_frames": Value("int32"), "cycle": Value("int32"), "step": Value("string"),
               "verdict": Value("string"), "rationale_steps": Sequence(Value("string"))}
    present = set(rows[0]) if rows else set(columns) - set(PASSTHROUGH)
    return Features({k: v for k, v in columns.items() if k in present})


def write_hf(rows: list[dict[str, Any]], out: Path, card: str) -> Path:
    """A ``datasets`` folder (``save_to_disk``; ``load_from_disk`` reads it) with ``README.md``."""
    from datasets import Dataset

    Dataset.from_list(rows, features=_features(rows)).save_to_disk(str(out))
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def dataset_card(data: CycleData, rows: list[dict[str, Any]], name: str, video_root: str) -> str:
    """What the data is and where it came from: counts per task, label type and step, the
    cycle's yields, the base model; the license is the user's to set before publishing."""
    tasks = Counter(r["task"] for r in rows)
    kinds = Counter(k for r in rows for k in dict.fromkeys(r["label_types"]))
    steps = Counter(r["step"] for r in rows)
    yields = {k: data.summary[k] for k in ("answer_yield", "rationalization_yield", "total_yield")
              if k in data.summary}

    def table(title: str, counts: Counter) -> str:
        lines = [f"| {title} | rows |", "|---|---:|"] + [f"| {k} | {n} |" for k, n in sorted(counts.items())]
        return "\n".join(lines)

    return "\n".join([
        "---",
        "license: unknown  # set before publishing: the videos' and the base model's terms apply",
        "task_categories:\n- video-text-to-text",
        "tags:\n- video-star\n- self-training\n- videostar",
        f"pretty_name: {name}",
        "---",
        f"# {name}",
        "",
        f"Video instruction-tuning data self-generated by videostar (Video-STaR), cycle {data.cycle}: "
        "answers and hinted rationales that the Parser-Verifier kept because they contain every label. "
        "Questions never carry the hint.",
        "",
        f"- source: {data.source}",
        f"- base model: {data.base_model or 'unknown'}",
        f"- rows: {len(rows)}",
        "- yields of the cycle: " + ", ".join(f"{k} {v:.3f}" for k, v in yields.items()),
        f"- frames per video: {data.num_frames or 'as the trainer samples'}",
        f"- videos: paths relative to `{video_root}` unless rewritten with `--video-root`",
        "",
        table("task", tasks), "", table("label type", kinds), "", table("step", steps), "",
        "Columns: `question`, `answer` (the rationale), `video`, `start`/`end` (seconds, a segment), "
        "`task`, `label_types`, `labels` (JSON), `cycle`, `step` (answer or rationalization), "
        "`verdict` (the verifier's reasons)" + (", `rationale_steps`" if "rationale_steps" in rows[0]
                                                 else "") + "." if rows else "",
        "",
    ])


@dataclass
class ExportResult:
    """What ``export`` wrote."""

    path: Path
    rows: int
    video_root: str
    errors: list[str]


def export(data: CycleData, fmt: str, out: str | Path, video_root: str | None = None,
           name: str | None = None) -> ExportResult:
    """Write ``data`` as ``fmt`` (one of ``FORMATS``) into the folder ``out``."""
    if fmt not in FORMATS:
        raise VideostarError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    name = name or f"videostar_cycle{data.cycle}"
    rows, root = export_rows(data, video_root)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "sharegpt":
        path = write_sharegpt(rows, out, name)
    elif fmt == "llava":
        path = write_llava(rows, out, name)
    else:
        path = write_hf(rows, out, dataset_card(data, rows, name, video_root or root))
    return ExportResult(path, len(rows), video_root if video_root is not None else root, data.errors)
