"""Error types that name the offending file and line, so bad input never turns into a silent wrong result."""

from __future__ import annotations

from pathlib import Path


class YolocompError(Exception):
    """Base class of the library's own errors."""


class InputError(YolocompError, ValueError):
    """Bad user input: the message starts with ``file:line:`` (or ``file:`` when no line applies).

    Attributes ``path``, ``line`` and ``reason`` keep the parts so callers and tests can inspect them.
    """

    def __init__(self, path: str | Path | None, reason: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = reason
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(where + reason)


class DataError(InputError):
    """A dataset file (image, label, annotation json/xml, .data, .names) is missing or malformed."""


class CfgError(InputError):
    """A Darknet cfg file is malformed: unknown section or key, bad value, inconsistent graph."""


class WeightsError(InputError):
    """A weights file (.weights, checkpoint) does not match the model it is loaded into."""


class ParameterError(YolocompError, ValueError):
    """A notebook or runner parameter is unknown or has the wrong type."""
