"""Stable names in a compiled pipeline.

When the KFP compiler (2.17) merges a sub-pipeline into its parent, names that collide
(``comp-generate``, ``comp-condition-5``, ``exec-decide``, ...) get ``-2``, ``-3`` suffixes in
the iteration order of a protobuf map, which changes from process to process. The same
pipeline would then compile to a different file each time, and the committed GitOps manifest
could never be checked against the compiler. This renames every component and executor by
the order of a walk from the root (tasks in sorted order), so equal pipelines give equal files.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SUFFIX = re.compile(r"(-\d+)+$")
_GRAPHS = re.compile(r"^comp-(cycle-\d+|vlm-rlaif(-after-cycle-\d+)?)$")
"""Our sub-pipelines (:mod:`star_cycle`, :mod:`rlaif_stage`): named uniquely when built, kept."""


def _unique(order: list[str], prefix: str) -> dict[str, str]:
    """``comp-generate-2-3`` ... -> ``comp-generate``, ``comp-generate-2``, ... by first use."""
    new: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name in order:
        if _GRAPHS.match(name):
            new[name] = name
            continue
        base = _SUFFIX.sub("", name.removeprefix(prefix))
        counts[base] = counts.get(base, 0) + 1
        new[name] = f"{prefix}{base}" + (f"-{counts[base]}" if counts[base] > 1 else "")
    return new


def canonicalize(pipeline_spec: dict[str, Any], platform_spec: dict[str, Any] | None) -> None:
    """Rename components and executors of a compiled pipeline (and its platform spec) in place."""
    components = pipeline_spec["components"]
    order: list[str] = []

    def walk(dag: dict[str, Any]) -> None:
        for _, task in sorted(dag.get("tasks", {}).items()):
            name = task["componentRef"]["name"]
            if name not in order:
                order.append(name)
                walk(components[name].get("dag", {}))

    walk(pipeline_spec["root"]["dag"])
    names = _unique(order, "comp-")
    for spec in [pipeline_spec["root"], *components.values()]:
        for task in spec.get("dag", {}).get("tasks", {}).values():
            task["componentRef"]["name"] = names[task["componentRef"]["name"]]
    pipeline_spec["components"] = {names[old]: components[old] for old in order}
    _share_executors(pipeline_spec, platform_spec)


def _share_executors(pipeline_spec: dict[str, Any], platform_spec: dict[str, Any] | None) -> None:
    """One executor per distinct content (container + Kubernetes settings), named by first use:
    which identical executors the compiler merges also changes from process to process."""
    deployment = pipeline_spec["deploymentSpec"]["executors"]
    k8s = (platform_spec or {}).get("platforms", {}).get("kubernetes", {}).get(
        "deploymentSpec", {}).get("executors", {})
    by_content: dict[str, str] = {}
    for comp in pipeline_spec["components"].values():
        if "executorLabel" not in comp:
            continue
        old = comp["executorLabel"]
        key = json.dumps([deployment[old], k8s.get(old)], sort_keys=True)
        by_content.setdefault(key, old)
        comp["executorLabel"] = key
    names = _unique(list(by_content.values()), "exec-")
    label_of = {key: names[old] for key, old in by_content.items()}
    for comp in pipeline_spec["components"].values():
        if "executorLabel" in comp:
            comp["executorLabel"] = label_of[comp["executorLabel"]]
    pipeline_spec["deploymentSpec"]["executors"] = {label_of[k]: deployment[o] for k, o in by_content.items()}
    if k8s:
        platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"] = {
            label_of[k]: k8s[o] for k, o in by_content.items() if o in k8s}


def canonicalize_documents(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The YAML documents the compiler wrote: IR (pipeline spec [+ platform spec]) or the
    Kubernetes-native Pipeline + PipelineVersion."""
    if docs and docs[0].get("kind") == "Pipeline":
        for doc in docs:
            if doc.get("kind") == "PipelineVersion":
                canonicalize(doc["spec"]["pipelineSpec"], doc["spec"].get("platformSpec"))
        return docs
    canonicalize(docs[0], docs[1] if len(docs) > 1 else None)
    return docs
