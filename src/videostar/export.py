"""A cycle's self-generated training data in the formats other trainers read.

What a Video-STaR cycle produces is a dataset: the answers and hinted rationales the verifier
kept, which that cycle's SFT trained on. ``export`` writes them as LLaMA-Factory's ShareGPT video
layout (with the ``dataset_info.json`` it reads), LLaVA conversation JSON with ``<video>``, or a
Hugging Face ``datasets`` folder with a dataset card. Every row keeps where it came from (cycle,
step, the verifier's verdict); fields named in ``PASSTHROUGH`` (STEP's ``rationale_steps``)
travel unchanged (as JSON text in ``hf``, where one column type cannot hold every shape).
An export is complete or absent: built beside ``--out`` and swapped in whole, with every row it
left out (bad, torn, duplicated, outside the videos' folder) reported and counted.

A cycle is read from a local run folder (``locate_cycle`` is the one place that knows its
layout) or from the cycle's MLflow run, whose dataset input is the published training file.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import sys
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from videostar import layout
from videostar.data.records import Record, read_rows, read_valid, write_json
from videostar.errors import ConfigError, RecordError, VideostarError, first_line
from videostar.outputs import clean_save_debris, locked, publish_mode, replace_folder

FORMATS = ("hf", "llava", "sharegpt")
PASSTHROUGH = ("rationale_steps",)
"""Row fields exported as they are when present (STEP keeps its graph-path rationale steps)."""


@dataclass
class CycleData:
    """One cycle's training files and what the dataset card says about them.

    ``errors`` collects what was left out (a missing file, a bad or duplicated row), each also
    printed on one line as it is found.
    """

    cycle: int
    files: list[Path]
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


def _read_cycle_json(path: Path) -> dict[str, Any]:
    try:
        produced = json.loads(path.read_text(encoding="utf-8"))
        int(produced["cycle"])
        return produced
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise VideostarError(f"{path}: not a readable {layout.CYCLE} ({first_line(exc)})") from exc


def locate_cycle(run_dir: str | Path, cycle: int | None = None) -> CycleFiles:
    """The files of ``cycle`` (``None``: the last) in a local run folder, through the file-layout
    contract: each cycle's decide task writes ``cycle.json`` (where its model and training data
    are) beside its ``summary.json``, wherever KFP put the task's folder."""
    run_dir = Path(run_dir)
    found = {int(_read_cycle_json(p)["cycle"]): p for p in sorted(run_dir.rglob(layout.CYCLE))}
    if not found:
        raise VideostarError(f"{run_dir}: no finished cycle (no {layout.CYCLE} below it)")
    k = max(found) if cycle is None else cycle
    if k not in found:
        raise VideostarError(f"{run_dir}: no cycle {k} (finished cycles: {sorted(found)})")
    produced = _read_cycle_json(found[k])
    return CycleFiles(k, found[k].parent / layout.SUMMARY, [Path(p) for p in produced["training_files"]],
                      Path(produced["model"]))


def parse_cycle(text: str) -> int | None:
    """``--cycle``: a number, or ``last`` (``None``)."""
    if text == "last":
        return None
    if not text.isdigit():
        raise VideostarError(f"--cycle: {text!r} is neither a cycle number nor 'last'")
    return int(text)


def _skip(message: str, errors: list[str]) -> None:
    """Something left out of the export: one line on stderr now, and counted in the result."""
    print(f"skipped: {message}", file=sys.stderr)
    errors.append(message)


def read_local_cycle(run_dir: str | Path, cycle: int | None, num_frames: int | None = None) -> CycleData:
    """A cycle of a local run folder; the base model is the one its adapter's card names. A
    training file that ``cycle.json`` names but that is gone is reported, and the rest exported."""
    files = locate_cycle(run_dir, cycle)
    card = files.model / layout.MODEL_CARD
    base = json.loads(card.read_text()).get("base", "") if card.exists() else ""
    data = CycleData(files.cycle, [], json.loads(files.summary.read_text()), str(base),
                     f"{Path(run_dir).resolve()} cycle {files.cycle}", num_frames)
    for path in files.training:
        if path.is_file():
            data.files.append(path)
        else:
            _skip(f"{path}: training file named in {layout.CYCLE} is missing; its rows are not exported",
                  data.errors)
    return data


def read_mlflow_cycle(tracking_uri: str, run_id: str, cycle: int | None,
                      num_frames: int | None = None) -> CycleData:
    """A cycle of a tracked pipeline run (the parent run's id, or a cycle run's).

    The rows are the training file the cycle's run names as its dataset input (an ``s3://``
    object or a ``file:`` path of the store); yields come from the run's metrics.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise VideostarError(f"MLflow at {tracking_uri}: {first_line(exc)}") from exc
    parent = run.data.tags.get("mlflow.parentRunId", run_id) if layout.CYCLE_TAG in run.data.tags else run_id
    if layout.CYCLE_TAG in run.data.tags and cycle is None:
        cycle = int(run.data.tags[layout.CYCLE_TAG])
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    cycles = {int(r.data.tags[layout.CYCLE_TAG]): r for r in children
              if r.data.tags.get(layout.CYCLE_TAG, "").isdigit()}
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
    return CycleData(k, [_fetch(uri)], summary, found.data.tags.get("base_model", ""),
                     f"MLflow run {found.info.run_id} (cycle {k})", frames)


def _fetch(uri: str) -> Path:
    """A local copy of a published training file."""
    if uri.startswith("s3://"):
        from videostar.store import download_object

        return download_object(uri)
    path = Path(url2pathname(urlsplit(uri).path)) if uri.startswith("file:") else Path(uri)
    if not path.is_file():
        raise VideostarError(f"{uri}: training data not found")
    return path


def reasons(verdict: dict[str, Any]) -> str:
    """The verifier's verdict in one line: why each label passed or failed.

    A verdict of another shape raises RecordError (it did not come from our verifier)."""
    if not isinstance(verdict, dict):
        raise RecordError(f"verdict must be an object, got {type(verdict).__name__}")
    if verdict.get("error"):
        if not isinstance(verdict["error"], str):
            raise RecordError("verdict.error must be a string")
        return verdict["error"]
    labels = verdict.get("labels", {})
    if not isinstance(labels, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("reason"), str) for v in labels.values()):
        raise RecordError("verdict.labels must map each label to an object with a text 'reason'")
    return "; ".join(f"{name}: {v['reason']}" for name, v in labels.items())


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
            try:
                why = reasons(row.get("verdict", {}))
            except RecordError as exc:
                why = f"(unreadable verdict: {exc})"
            values = {"cycle": cycle, "step": step, "outcome": outcome, "task": row.get("task", ""),
                      "id": row.get("id", ""), "question": row.get("question", ""),
                      "answer": row.get("answer", ""), "reasons": why}
            for key, value in values.items():
                columns[key].append(value)
    return columns


STEPS = ("answer", "rationalization")
"""The steps whose verified rows make a cycle's training data (a row's ``prompt_kind``)."""


@dataclass(frozen=True)
class VerifiedRow:
    """A training row that passed every check the export makes (its ``id`` is unique)."""

    id: str
    record: Record
    row: dict[str, Any]
    scheme: str
    path: str  # the video's normalised path, without its scheme


def _split_scheme(path: str) -> tuple[str, str]:
    """``s3://b/v.mp4`` -> (``s3://``, ``b/v.mp4``); a plain path has no scheme."""
    scheme, sep, rest = path.partition("://")
    return (scheme + sep, rest) if sep else ("", path)


def verified_row(obj: Any) -> VerifiedRow:
    """One training-file row checked for everything the formats need; a row of any other shape
    raises RecordError with the reason (the shared reader reports it as ``file:line: reason``)."""
    rec = Record.from_json(obj)
    answer = obj.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise RecordError(f"record {rec.id}: answer must be a non-empty string")
    verdict = obj.get("verdict")
    if not isinstance(verdict, dict) or verdict.get("passed") is not True:
        raise RecordError(f"record {rec.id}: not a verified answer (verdict.passed is not true)")
    try:
        reasons(verdict)
    except RecordError as exc:
        raise RecordError(f"record {rec.id}: {exc}") from exc
    step = obj.get("prompt_kind", "answer")
    if step not in STEPS:
        raise RecordError(f"record {rec.id}: prompt_kind must be one of {', '.join(STEPS)}")
    for key in PASSTHROUGH:
        try:
            json.dumps(obj.get(key), allow_nan=False)
        except ValueError as exc:
            raise RecordError(f"record {rec.id}: {key}: {exc}") from exc
    scheme, path = _split_scheme(rec.video)
    if ".." in path.split("/") or "\\" in path or "\x00" in path:
        raise RecordError(f"record {rec.id}: video {rec.video!r} leaves its folder ('..', '\\' or NUL)")
    path = posixpath.normpath(path)
    return VerifiedRow(rec.id, rec, obj, scheme, "/" + path.lstrip("/") if path.startswith("/") else path)


def _video_root(rows: list[VerifiedRow]) -> list[str]:
    """The path segments of the deepest folder holding every video (rows of one kind)."""
    dirs = [r.path.split("/")[:-1] for r in rows]
    root: list[str] = []
    for parts in zip(*dirs, strict=False):
        if len(set(parts)) > 1:
            break
        root.append(parts[0])
    return root


def _kind(row: VerifiedRow) -> tuple[str, bool]:
    return row.scheme, row.path.startswith("/")


def read_verified(data: CycleData) -> list[VerifiedRow]:
    """The cycle's rows through the one shared reader: a bad, torn or duplicated row is reported
    as ``file:line: reason`` and left out; so is a row whose video is not of the same kind
    (scheme, absolute or relative path) as the first row's, since no common folder holds both."""
    rows = read_valid(data.files, verified_row, data.errors)
    kept = []
    for row in rows:
        if _kind(row) != _kind(rows[0]):
            _skip(f"{data.source}: record {row.id}: video {row.record.video!r} is not under the same "
                  f"root as {rows[0].record.video!r} (another scheme, or absolute beside relative)",
                  data.errors)
            continue
        kept.append(row)
    return kept


def export_rows(data: CycleData, video_root: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The cycle's rows in the flat form every format derives from, and the videos' folder.

    Videos are made relative to their common folder, then joined to ``video_root`` when given
    (e.g. ``s3://bucket/videos`` or the folder a trainer mounts); paths with ``..`` are refused
    per row, so no exported path leaves that folder.
    """
    records = read_verified(data)
    segments = _video_root(records)
    root = ""
    if records:
        joined = "/".join(segments)
        root = records[0].scheme + (joined or "/" if _kind(records[0])[1] else joined)
    passthrough = [k for k in PASSTHROUGH if any(k in r.row for r in records)]
    out = []
    for item in records:
        rec, row = item.record, item.row
        video = "/".join(item.path.split("/")[len(segments):])
        if video_root:
            video = posixpath.join(video_root, video)
        out.append({
            "id": rec.id, "video": video, "question": rec.question, "answer": row["answer"],
            "task": rec.task, "label_types": list(rec.label_type),
            "labels": json.dumps(rec.label, ensure_ascii=False),
            "start": rec.start, "end": rec.end, "num_frames": data.num_frames,
            "cycle": data.cycle, "step": row.get("prompt_kind", "answer"),
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
    """Explicit column types, so an empty column (no segment, no frames) keeps its type.

    ``labels`` and the ``PASSTHROUGH`` fields are JSON text: their values differ in shape from
    row to row (``rationale_steps`` may be a list of strings or of objects), and one Arrow type
    per column would coerce them (a ``{"x": 1}`` read back as ``['x']``).
    """
    from datasets import Features, Sequence, Value

    columns = {"id": Value("string"), "video": Value("string"), "question": Value("string"),
               "answer": Value("string"), "task": Value("string"), "label_types": Sequence(Value("string")),
               "labels": Value("string"), "start": Value("float64"), "end": Value("float64"),
               "num_frames": Value("int32"), "cycle": Value("int32"), "step": Value("string"),
               "verdict": Value("string"), **{k: Value("string") for k in PASSTHROUGH}}
    present = set(rows[0]) if rows else set(columns) - set(PASSTHROUGH)
    return Features({k: v for k, v in columns.items() if k in present})


def write_hf(rows: list[dict[str, Any]], out: Path, card: str) -> Path:
    """A ``datasets`` folder (``save_to_disk``; ``load_from_disk`` reads it) with ``README.md``."""
    from datasets import Dataset

    as_text = [{k: json.dumps(v, ensure_ascii=False) if k in PASSTHROUGH and v is not None else v
                for k, v in r.items()} for r in rows]
    Dataset.from_list(as_text, features=_features(rows)).save_to_disk(str(out))
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
        f"pretty_name: {json.dumps(name, ensure_ascii=False)}",  # a quoted scalar: no key injection
        "---",
        f"# {name}",
        "",
        f"Video instruction-tuning data self-generated by videostar (Video-STaR), cycle {data.cycle}: "
        "answers and hinted rationales that the Parser-Verifier kept because they contain every label. "
        "Questions never carry the hint.",
        "",
        f"- source: {data.source}",
        f"- base model: {data.base_model or 'unknown'}",
        f"- rows: {len(rows)}; left out: {len(data.errors)} (bad, torn or duplicated rows, missing "
        f"files; each named in `{MARKER}`)",
        "- yields of the cycle: " + ", ".join(f"{k} {v:.3f}" for k, v in yields.items()),
        f"- frames per video: {data.num_frames or 'as the trainer samples'}",
        f"- videos: paths relative to `{video_root}` unless rewritten with `--video-root`",
        "",
        table("task", tasks), "", table("label type", kinds), "", table("step", steps), "",
        "Columns: `question`, `answer` (the rationale), `video`, `start`/`end` (seconds, a segment), "
        "`task`, `label_types`, `labels` (JSON), `cycle`, `step` (answer or rationalization), "
        "`verdict` (the verifier's reasons)" + (", `rationale_steps` (JSON)" if "rationale_steps" in rows[0]
                                                 else "") + "." if rows else "",
        "",
    ])


MARKER = ".videostar-export.json"
"""Written into every export folder: what it holds, and what was left out of it. A folder without
it is not an export, and is never replaced."""
_NAME_LIMIT = 200


def check_name(name: str) -> str:
    """``--name`` is a file name (``<name>.json``, the dataset's key and title), never a path."""
    bad = [c for c in name if unicodedata.category(c) == "Cc"]
    if not name or name in (".", "..") or "/" in name or "\\" in name or bad:
        raise ConfigError(f"--name {name!r}: not a file name (no '/', '\\', control characters, "
                          "'.' or '..'); the export is written under --out")
    if len(name.encode()) > _NAME_LIMIT:
        raise ConfigError(f"--name: {len(name.encode())} bytes, at most {_NAME_LIMIT}")
    return name


def _check_out(out: Path) -> None:
    """``out`` may be new, empty, or an earlier export, which a finished export replaces whole."""
    if out.exists() and not out.is_dir():
        raise VideostarError(f"--out {out}: is a file, not a folder")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise VideostarError(f"--out {out}: holds files that are not a videostar export; "
                             "not replaced (choose a new or empty folder)")


@dataclass
class ExportResult:
    """What ``export`` wrote, and what it left out (each reported on stderr as it was found)."""

    path: Path
    rows: int
    video_root: str
    errors: list[str]


def export(data: CycleData, fmt: str, out: str | Path, video_root: str | None = None,
           name: str | None = None) -> ExportResult:
    """Write ``data`` as ``fmt`` (one of ``FORMATS``) as the folder ``out``.

    The export is built in a temp folder beside ``out`` and swapped in whole once finished, so
    a killed export leaves the earlier one as it was; exports to one folder take turns, and the
    temp folders killed ones left are removed first. Nothing is written outside ``out``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    name = check_name(name or f"videostar_cycle{data.cycle}")
    out = Path(out).absolute()
    _check_out(out)
    rows, root = export_rows(data, video_root)
    if not rows:
        raise VideostarError(f"{data.source}: no verified rows to export ({len(data.errors)} left out); "
                             f"{out} not written")
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out):
        _check_out(out)  # again: another export may have finished meanwhile
        clean_save_debris(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out.parent))
        try:
            if fmt == "sharegpt":
                path = out / write_sharegpt(rows, tmp, name).name
            elif fmt == "llava":
                path = out / write_llava(rows, tmp, name).name
            else:
                write_hf(rows, tmp, dataset_card(data, rows, name, video_root or root))
                path = out
            write_json(tmp / MARKER, {"format": fmt, "name": name, "source": data.source,
                                      "cycle": data.cycle, "rows": len(rows), "left_out": data.errors})
            publish_mode(tmp)
            replace_folder(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(path, len(rows), video_root if video_root is not None else root, data.errors)
