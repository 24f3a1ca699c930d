"""Typed errors: each names *what* went wrong and *where*, so one line is enough to act on."""

from __future__ import annotations


class VideostarError(Exception):
    """Base class for errors the CLI reports as one line."""


class ConfigError(VideostarError):
    """A run configuration field is wrong; the CLI exits with code 2."""


class VideoError(VideostarError):
    """A video could not be read: missing, empty, corrupt or undecodable."""

    def __init__(self, path: str, cause: str):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class RecordError(VideostarError):
    """A data record or label is malformed."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type): what a one-line report shows."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
