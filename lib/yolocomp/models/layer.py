"""The contract between the cfg parser, the layer builders and the .weights / cfg writers.

A cfg file is a list of :class:`Section`s. Each layer section type has a builder registered with
:func:`register_layer`; the builder turns the section into a :class:`DarknetLayer`. Everything downstream (the graph's
forward, .weights I/O, writing the cfg back after surgery, pruning's dependency analysis) talks to layers only
through the attributes and methods of :class:`DarknetLayer`, so a new block type is one builder plus one class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CfgError

_REQUIRED = object()


@dataclass
class Section:
    """One ``[type]`` block of a cfg file.

    type: the section name as written, lower-cased (``convolutional``, ``net`` ...).
    options: raw string values with whitespace removed, in file order.
    line: 1-based line of the ``[type]`` header; key_lines: 1-based line of each key.
    path: file name used in messages.  index: layer index (``-1`` for ``[net]``).
    used: keys a builder has read; the rest are reported as ignored (or rejected, see the builder).
    """

    type: str
    options: dict[str, str]
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)
    path: str = "<cfg>"
    index: int = -1
    used: set[str] = field(default_factory=set)

    def error(self, reason: str, key: str | None = None) -> CfgError:
        """A CfgError naming the file and the line of ``key`` (or of the section header)."""
        line = self.key_lines.get(key, self.line) if key else self.line
        what = f"[{self.type}]" + (f" {key}" if key else "")
        return CfgError(self.path, f"{what}: {reason}", line)

    def _raw(self, key: str, default):
        self.used.add(key)
        if key in self.options:
            return self.options[key]
        if default is _REQUIRED:
            raise self.error("missing required key", key)
        return default

    def str(self, key: str, default=_REQUIRED) -> str:
        return self._raw(key, default)

    def int(self, key: str, default=_REQUIRED) -> int:
        v = self._raw(key, default)
        if not isinstance(v, str):
            return v
        try:
            return int(v)
        except ValueError:
            raise self.error(f"expected an integer, got {v!r}", key) from None

    def float(self, key: str, default=_REQUIRED) -> float:
        v = self._raw(key, default)
        if not isinstance(v, str):
            return v
        try:
            return float(v)
        except ValueError:
            raise self.error(f"expected a number, got {v!r}", key) from None

    def ints(self, key: str, default=_REQUIRED) -> list[int]:
        v = self._raw(key, default)
        if not isinstance(v, str):
            return v
        try:
            return [int(x) for x in v.split(",") if x != ""]
        except ValueError:
            raise self.error(f"expected a comma-separated list of integers, got {v!r}", key) from None

    def floats(self, key: str, default=_REQUIRED) -> list[float]:
        v = self._raw(key, default)
        if not isinstance(v, str):
            return v
        try:
            return [float(x) for x in v.split(",") if x != ""]
        except ValueError:
            raise self.error(f"expected a comma-separated list of numbers, got {v!r}", key) from None


@dataclass
class BuildContext:
    """What a builder may know about the layers before it.

    channels: output channels of every earlier layer (index = layer index).  in_channels: the input channels
    of this layer (the previous layer's output, or the ``[net]`` channels for layer 0).  net: the ``[net]``
    section.  path: cfg file name for messages.
    """

    channels: list[int]
    in_channels: int
    net: Section
    path: str = "<cfg>"

    def resolve(self, section: Section, key: str, ref: int) -> int:
        """Absolute index of a layer reference (negative = relative to this layer); errors on forward refs."""
        i = section.index
        j = i + ref if ref < 0 else ref
        if not 0 <= j < i:
            raise section.error(f"refers to layer {j}, which is not an earlier layer (this is layer {i})", key)
        return j


class DarknetLayer(nn.Module):
    """Base class of every layer built from a cfg section.

    Attributes set by the builder:
      out_channels: channels of this layer's output.
      inputs: absolute indices of the layers whose outputs ``forward`` takes, in order
              (default ``[index - 1]``; for layer 0 ``[-1]`` means the network input).
      section_type: the cfg section name it writes back as.
    ``forward(*xs)`` receives the outputs of ``inputs`` in that order.
    """

    section_type: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels: int = 0
        self.inputs: list[int] = []

    def cfg_options(self) -> list[tuple[str, str]]:
        """The ``key=value`` pairs that rebuild this layer as it is now (after surgery, from module shapes)."""
        raise NotImplementedError(type(self).__name__)

    def darknet_tensors(self) -> list[torch.Tensor]:
        """The tensors this layer stores in a .weights file, in file order (empty for parameter-free layers).
        Reading fills them in place with ``copy_``; writing concatenates their flattened float32 values."""
        return []


Builder = Callable[[Section, BuildContext], DarknetLayer]
LAYER_BUILDERS: dict[str, Builder] = {}


def register_layer(*types: str) -> Callable[[Builder], Builder]:
    """Register a builder for one or more section names (aliases, e.g. ``convolutional`` and ``conv``)."""
    def add(fn: Builder) -> Builder:
        for t in types:
            if t in LAYER_BUILDERS:
                raise KeyError(f"cfg section [{t}] registered twice")
            LAYER_BUILDERS[t] = fn
        return fn
    return add
