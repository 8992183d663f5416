"""Darknet cfg text -> list of :class:`~yolocomp.models.layer.Section`, with Darknet's own syntax rules.

Darknet deletes every whitespace character of a line before looking at it, skips lines starting with ``#`` or
``;``, and reads ``key=value`` pairs into the current ``[section]``.  We do the same and are stricter where Darknet
would silently misbehave: a duplicate key, a key before any section, an unknown section name or an empty file is a
:class:`~yolocomp.errors.CfgError` naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CfgError
from . import head, layers_darknet, layers_seed  # noqa: F401  (importing registers the section builders)
from .layer import LAYER_BUILDERS, Section

NET_SECTIONS = ("net", "network")
_WS = re.compile(r"\s+")


def parse_cfg(text: str, path: str = "<cfg>") -> list[Section]:
    """Parse cfg text.  Returns the sections in file order: the first is ``[net]``/``[network]`` (index -1), the
    others are layers with ``index`` 0, 1, ...  Values are kept as strings with all whitespace removed."""
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _WS.sub("", raw)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if line[-1] != "]" or len(line) < 3:
                raise CfgError(path, f"malformed section header {raw.strip()!r}", lineno)
            kind = line[1:-1].lower()
            if not sections and kind not in NET_SECTIONS:
                raise CfgError(path, f"the first section must be [net] or [network], got [{kind}]", lineno)
            if sections and kind in NET_SECTIONS:
                raise CfgError(path, f"[{kind}] may only be the first section", lineno)
            if kind not in NET_SECTIONS and kind not in LAYER_BUILDERS:
                known = ", ".join(sorted(LAYER_BUILDERS))
                raise CfgError(path, f"unknown section [{kind}]; known sections: net, network, {known}", lineno)
            sections.append(Section(kind, {}, lineno, path=path, index=len(sections) - 1))
            continue
        if not sections:
            raise CfgError(path, f"key outside any section: {raw.strip()!r}", lineno)
        key, eq, value = line.partition("=")
        if not eq or not key:
            raise CfgError(path, f"expected key=value, got {raw.strip()!r}", lineno)
        sec = sections[-1]
        if key in sec.options:
            raise CfgError(path, f"[{sec.type}] duplicate key {key!r} (first set on line {sec.key_lines[key]})",
                           lineno)
        sec.options[key] = value
        sec.key_lines[key] = lineno
    if not sections:
        raise CfgError(path, "empty cfg: no [net] section")
    if len(sections) == 1:
        raise CfgError(path, "cfg has a [net] section but no layers", sections[0].line)
    return sections


def read_cfg(path: str | Path) -> list[Section]:
    """Read and parse a cfg file; messages name ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise CfgError(str(p), f"cannot read cfg file: {e.strerror or e}") from None
    return parse_cfg(text, str(p))
