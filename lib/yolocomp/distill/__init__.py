"""Knowledge distillation of YOLO detectors (shared/reference/quant-kd-spec.md §4): SPURS's ``--KDstr 1..5``,
ANDREY's classical KD with FitNets hints and his GAN-based KD, as trainer callbacks.

Modules: :mod:`~yolocomp.distill.losses` (pure loss terms), :mod:`~yolocomp.distill.masks` (fine-grained mask),
:mod:`~yolocomp.distill.strategies` (KDstr 1-5), :mod:`~yolocomp.distill.classical` (ANDREY's hint KD),
:mod:`~yolocomp.distill.teacher` (frozen teacher, forward hooks, hint layers, layer pairing),
:mod:`~yolocomp.distill.callback` (:class:`Distiller`), :mod:`~yolocomp.distill.gan` (:class:`GANDistiller`),
:mod:`~yolocomp.distill.experiment` (cached runs and tables for the notebooks).

Every method is registered in :data:`yolocomp.registry.DISTILLERS`; the entry's object is a factory
``factory(teacher: Darknet, **options) -> Callback`` (:func:`make`), its metadata ``origin`` (seed), ``spec``
(section of quant-kd-spec.md), ``summary``, ``needs_features``, ``weights`` (default loss weights, KDstr only)
and ``published`` ((seed, table, column or method label) of the seed's figure).
"""

from __future__ import annotations

from ..engine.callbacks import Callback
from ..registry import DISTILLERS
from .callback import Distiller
from .gan import Discriminator, GANDistiller
from .strategies import DEFAULT_WEIGHTS, KDOptions

_KD_OPTIONS = {"temperature", "weights", "reduction", "attention_p", "mask", "margin"}


def _kdstr_factory(name: str):
    def factory(teacher, feature_pairs=None, teacher_mode: str = "eval", **options) -> Callback:
        unknown = sorted(set(options) - _KD_OPTIONS)
        if unknown:
            raise TypeError(f"{name}: unknown option(s) {unknown}; known: {sorted(_KD_OPTIONS)}, feature_pairs, "
                            f"teacher_mode")
        return Distiller(teacher, name, feature_pairs, KDOptions(**options), teacher_mode)
    factory.__doc__ = f"A :class:`Distiller` of kind {name!r}."
    return factory


def _hint_factory(teacher, feature_pairs, **options) -> Callback:
    """A :class:`Distiller` of kind ``hint`` (ANDREY's classical KD)."""
    return Distiller(teacher, "hint", feature_pairs, **options)


_SUMMARY = {
    "KDstr1": "KL between teacher and student over all 5+C raw channels of every anchor cell (Hinton)",
    "KDstr2": "soft class KL + teacher-bounded box regression (Chen et al. 2017; TAN loss2)",
    "KDstr3": "soft class KL + L2 between student and teacher boxes at the positives",
    "KDstr4": "KDstr 3 + KL between spatial attention maps of every non-head conv",
    "KDstr5": "KDstr 4 with the attention maps masked to the cells covered by positives (fine-grained mask)",
}
# SPURS's table is printed with the Era-A numbering: our (HEAD's) KDstr 4/5 are its columns "5(L1)"/"6(L1)".
_PUBLISHED_AS = {"KDstr1": "KDstr 1", "KDstr2": "KDstr 2", "KDstr3": "KDstr 3", "KDstr4": "KDstr 5(L1)",
                 "KDstr5": "KDstr 6(L1)"}
for _name, _summary in _SUMMARY.items():
    DISTILLERS.register(_name, _kdstr_factory(_name), origin="SPURS", spec="quant-kd-spec §4.2", summary=_summary,
                        needs_features=_name in ("KDstr4", "KDstr5"), weights=dict(DEFAULT_WEIGHTS[_name]),
                        family="KDstr", published=("SPURS", "distillation", _PUBLISHED_AS[_name]))
DISTILLERS.register("hint", _hint_factory, origin="ANDREY", spec="quant-kd-spec §4.5", family="classical",
                    summary="Chen et al. classical KD: teacher-bounded GIoU, 0.7 hard + 0.3 teacher-label class loss, "
                            "FitNets L1 hints through 1x1 adaptation layers",
                    needs_features=True, weights={}, published=("ANDREY", "voc2007", "KD fts"))
DISTILLERS.register("gan", GANDistiller, origin="ANDREY", spec="quant-kd-spec §4.6", family="gan",
                    summary="one discriminator per head map; label smoothing and flipping; detection loss x0.05 "
                            "before the second stage", needs_features=False, weights={},
                    published=("ANDREY", "voc2007", "KD GAN"))


def make(name: str, teacher, **options) -> Callback:
    """The callback of the registered method ``name`` for ``teacher`` (options: see the method's class)."""
    return DISTILLERS.get(name)(teacher, **options)


__all__ = ["Discriminator", "Distiller", "GANDistiller", "KDOptions", "make"]
