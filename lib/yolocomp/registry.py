"""One registry of names (models, datasets, pruners, quantizers, distillers) that drives tests, notebooks and tables.

A registry maps a name to an object plus metadata (origin, published figures, ...). Tests parametrize over
``REGISTRY.names()``; notebooks loop over it to build table rows, so adding an entry adds it everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """An ordered name -> (object, metadata) map; registration order is the order of tables."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Callable[[T], T] | T:
        """``REG.register("x", obj, origin=...)`` or as a decorator ``@REG.register("x", origin=...)``."""
        def add(o: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, o, dict(meta))
            return o
        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def names(self, **where: Any) -> list[str]:
        """Names in registration order, optionally filtered on metadata equality (``names(family="tiny")``)."""
        return [e.name for e in self._entries.values() if all(e.meta.get(k) == v for k, v in where.items())]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


MODELS: Registry = Registry("model")          # filled by yolocomp.models.zoo
DATASETS: Registry = Registry("dataset")      # filled by yolocomp.data.catalog
# The compression registries fill when their package is imported (it registers on import; nothing here imports
# torch-heavy code eagerly): yolocomp.prune.select and yolocomp.sparse, yolocomp.quant.schemes, yolocomp.distill.
PRUNERS: Registry = Registry("pruner")          # filled by yolocomp.prune.select, yolocomp.sparse
QUANTIZERS: Registry = Registry("quantizer")    # filled by yolocomp.quant.schemes
DISTILLERS: Registry = Registry("distiller")    # filled by yolocomp.distill
