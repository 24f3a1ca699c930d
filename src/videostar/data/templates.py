"""Question wording per task. Templates live in config and never name the label."""

from __future__ import annotations

import hashlib

from videostar.errors import ConfigError


def question_for(templates: dict[str, list[str]], task: str, key: str, **fields: str) -> str:
    """Pick a template for ``task`` deterministically from ``key`` and fill in ``fields``.

    Deterministic so that rebuilding a dataset yields the same questions (and cache keys).
    """
    options = templates.get(task)
    if not options:
        raise ConfigError(f"templates.{task}: no question template for this task")
    digest = hashlib.sha1(key.encode()).digest()
    template = options[int.from_bytes(digest[:4], "big") % len(options)]
    try:
        return template.format(**fields)
    except KeyError as exc:
        raise ConfigError(f"templates.{task}: template needs field {exc}") from exc
