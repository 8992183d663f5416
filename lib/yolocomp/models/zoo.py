"""The model zoo: every Darknet cfg shipped in ``models/cfg/`` registered in :data:`yolocomp.registry.MODELS`.

Metadata of an entry (``MODELS.entry(name).meta``):

* ``cfg``: file name in ``yolocomp/models/cfg/``; ``classes``: the class count its headline published figures refer
  to (``build(name)`` uses it); ``family`` (detector layout) and ``backbone``.
* ``origin``: where the architecture comes from (``darknet`` = AlexeyAB/darknet, or a seed short name SPURS, HALO,
  ANDREY); ``origin_cfg``: the cfg file in that repository; ``seed_file``: the seed README (shared/seeds/) that
  publishes figures for it, or None.
* ``params_expected``: ``{classes: parameter count}`` computed by building the origin project's own model
  (shared/reference/arch-anchors.md §2); tests build our graph at each class count and compare to the unit.
* ``macs_conv_expected``: ``{classes: conv+linear MACs at 416x416}`` from the same builds (arch-anchors §2).
* ``published``: figures as printed, each a dict ``quantity, value (as printed; ANDREY's thin-space digit groups
  written ", "), classes, img_size ((H, W) or None), convention, source`` (all rows of the seed tables are in
  :func:`yolocomp.reference.published`). ``convention`` names how the number was obtained (arch-anchors §1 and §3):

  ===========================  ===================================================================================
  ``numel``                    Σ p.numel(), exact
  ``numel/2^20``               parameters in units of 2**20, rounded to the printed digits
  ``(P+2BNch)/2^20``           floats of the darknet .weights file (params + BN running mean/var) in 2**20
  ``(P-BNch)/2^20``            parameters after conv-BN fusion in 2**20
  ``numel/1e6``                parameters in millions, rounded or truncated to the printed digits
  ``thop-0.0.31``              MACs with the thop-0.0.31 rules (``bench.cost.macs_seed``), exact
  ``2*thop-0.0.31/1e9``        GFLOPS = 2 x thop-0.0.31 MACs / 1e9, rounded to the printed digits
  ``weights-MiB``              size of the fp32 .weights file in MiB, truncated or rounded to the printed digits
  ``torch.save-MiB``           size of a torch.save'd checkpoint in MiB (pickle layout dependent; not recomputed)
  ``darknet-bflops``           darknet's own "BFLOPS" line (conv, maxpool and shortcut terms; not recomputed)
  ===========================  ===================================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..paths import package_dir
from ..registry import MODELS

if TYPE_CHECKING:
    from .darknet import Darknet

CFG_DIR = package_dir() / "models" / "cfg"

SPURS = "000_6b059ec5ad982426.txt"
HALO = "002_bd3f0b5c69dd93d7.txt"
ANDREY = "004_ffd06f0fe2d7895d.txt"
_SPURS_TABLE = f"{SPURS}: '# Multiple network structures' table (Total parameters, GFLOPS)"
_SPURS_PRUNE = f"{SPURS}: '### 剪植实验' table 1 (剪植前参数量), oxfordhand"
_VOC = f"{ANDREY}: '## Pascal VOC 2007 test set' table"
_EXDARK = f"{ANDREY}: '## ExDark test set' table"
_HALO_HAND = f"{HALO}: '### Using Oxfordhand datasets' table"
_HALO_VIS = f"{HALO}: '### Using Visdrone datasets(Incomplete training)' table"
_HALO_ATT = f"{HALO}: '### Based on YOLOv3-tiny' attention table"
_HALO_MAIN = f"{HALO}: '# Important Update' table (visdrone)"
_DK = "AlexeyAB/darknet README, pre-trained models list (via shared/reference/arch-anchors.md §4)"
_SPURS_IMG = (480, 640)   # the size SPURS' model_info() feeds thop; the README's 608 is the speed-test size


def _fig(quantity: str, value: str, classes: int, img_size, convention: str, source: str) -> dict:
    return {"quantity": quantity, "value": value, "classes": classes, "img_size": img_size,
            "convention": convention, "source": source}


def _voc(params: str, macs: str, storage: str, exdark: tuple[str, str, str] | None) -> list[dict]:
    figs = [_fig("params", params, 20, None, "numel", _VOC),
            _fig("macs", macs, 20, (416, 416), "thop-0.0.31", _VOC),
            _fig("storage_mb", storage, 20, None, "torch.save-MiB", _VOC)]
    if exdark:
        p, m, s = exdark
        figs += [_fig("params", p, 12, None, "numel", _EXDARK),
                 _fig("macs", m, 12, (416, 416), "thop-0.0.31", _EXDARK),
                 _fig("storage_mb", s, 12, None, "torch.save-MiB", _EXDARK)]
    return figs


def _spurs(params: str, params_conv: str, gflops: str) -> list[dict]:
    return [_fig("params_m", params, 80, None, params_conv, _SPURS_TABLE),
            _fig("gflops", gflops, 80, _SPURS_IMG, "2*thop-0.0.31/1e9", _SPURS_TABLE)]


def _dk(bflops: str, mib: str, img: int = 416) -> list[dict]:
    return [_fig("bflops", bflops, 80, (img, img), "darknet-bflops", _DK),
            _fig("storage_mb", mib, 80, None, "weights-MiB", _DK)]


def _add(name: str, cfg: str, classes: int, family: str, backbone: str, origin: str, origin_cfg: str,
         seed_file: str | None, params_expected: dict[int, int], macs_conv_expected: dict[int, int],
         published: list[dict]) -> None:
    MODELS.register(name, CFG_DIR / cfg, cfg=cfg, classes=classes, family=family, backbone=backbone,
                    origin=origin, origin_cfg=origin_cfg, seed_file=seed_file, params_expected=params_expected,
                    macs_conv_expected=macs_conv_expected, published=published)


_add("yolov3", "yolov3.cfg", 80, "yolov3", "darknet53", "darknet", "cfg/yolov3.cfg", SPURS,
     {80: 61_949_149, 20: 61_626_049, 12: 61_582_969, 1: 61_523_734}, {80: 32_932_037_632, 20: 32_713_987_072},
     _spurs("59.13", "(P+2BNch)/2^20", "117.3")
     + _voc("61, 626, 049", "32, 829, 119, 167", "235.44", ("61, 582, 969", "32, 799, 960, 583", "235.27"))
     + [_fig("params_m", "58.67", 1, None, "numel/2^20", _SPURS_PRUNE)]
     + _dk("65.9", "236"))
_add("yolov3-tiny", "yolov3-tiny.cfg", 80, "yolov3-tiny", "darknet-tiny", "darknet", "cfg/yolov3-tiny.cfg", SPURS,
     {80: 8_852_366, 20: 8_713_766, 12: 8_695_286, 10: 8_690_666, 1: 8_669_876}, {80: 2_782_480_896, 20: 2_735_755_776, 1: 2_720_959_488},
     _spurs("8.45", "(P+2BNch)/2^20", "9.9")
     + _voc("8, 713, 766", "2, 753, 665, 551", "33.29", ("8, 695, 286", "2, 747, 415, 255", "33.22"))
     + [_fig("params_m", "8.27", 1, None, "numel/2^20", _SPURS_PRUNE),
        _fig("params_m", "8.67", 1, None, "numel/1e6", _HALO_HAND),
        _fig("params_m", "8.69", 10, None, "numel/1e6", _HALO_VIS),
        _fig("params_m", "8.67", 1, None, "numel/1e6", _HALO_ATT)]
     + _dk("5.6", "33.7"))
_add("yolov3-spp", "yolov3-spp.cfg", 80, "yolov3", "darknet53-spp", "darknet", "cfg/yolov3-spp.cfg", None,
     {80: 62_998_749, 20: 62_675_649}, {80: 33_109_246_976, 20: 32_891_196_416},
     _dk("141.5", "240", img=608))
_add("yolov4", "yolov4.cfg", 80, "yolov4", "cspdarknet53", "darknet", "cfg/yolov4.cfg", SPURS,
     {80: 64_363_101, 20: 64_040_001}, {80: 30_052_385_792, 20: 29_834_335_232},
     _spurs("61.35", "(P-BNch)/2^20", "107.1") + _dk("60.1", "245"))
_add("yolov4-tiny", "yolov4-tiny.cfg", 80, "yolov4-tiny", "cspdarknet53-tiny", "darknet", "cfg/yolov4-tiny.cfg",
     SPURS, {80: 6_056_606, 20: 5_918_006}, {80: 3_453_938_176, 20: 3_407_213_056},
     _spurs("5.78", "numel/2^20", "12.3") + _dk("6.9", "23.1"))
_add("yolov3-tiny-prn", "yolov3-tiny-prn.cfg", 80, "yolov3-tiny", "darknet-tiny-prn", "darknet",
     "cfg/yolov3-tiny-prn.cfg", None, {80: 4_935_182}, {80: 1_730_430_208},
     _dk("3.5", "18.8"))
_add("enet-coco", "enet-coco.cfg", 80, "yolov3-tiny", "efficientnet-b0", "darknet", "cfg/enet-coco.cfg", None,
     {80: 4_770_414}, {80: 1_865_064_256},
     _dk("3.7", "18.3"))
_add("yolo-nano", "yolo-nano.cfg", 20, "yolo-nano", "yolo-nano", "ANDREY",
     "models.py YOLO_Nano class (cfg/pascal/yolo-nano.cfg selects classes/anchors)", ANDREY,
     {20: 2_890_527, 12: 2_872_743}, {20: 2_031_908_624},
     _voc("2, 890, 527", "2, 082, 423, 381", "11.38", ("2, 872, 743", "2, 071, 460, 013", "11.31")))
_add("yolo-nano-leaky", "yolo-nano-leaky.cfg", 20, "yolo-nano", "yolo-nano", "ANDREY",
     "models.py YOLO_Nano class with leaky activations", ANDREY,
     {20: 2_890_527, 12: 2_872_743}, {20: 2_031_908_624},
     _voc("2, 890, 527", "2, 098, 305, 681", "11.38", ("2, 872, 743", "2, 087, 342, 313", "11.31")))
_add("yolov3-mobile", "yolov3-mobile.cfg", 20, "yolov3", "mobilenetv3", "ANDREY", "cfg/pascal/yolov3-mobile.cfg",
     ANDREY, {20: 4_395_985, 12: 4_390_537}, {20: 1_327_579_008},
     _voc("4, 395, 985", "1, 419, 864, 487", "17.59", ("4, 390, 537", "1, 416, 145, 135", "17.57")))
_add("yolov3-mobile-leaky", "yolov3-mobile-leaky.cfg", 20, "yolov3", "mobilenetv3", "ANDREY",
     "cfg/pascal/mobile_fullleaky.cfg", ANDREY, {20: 4_395_985, 12: 4_390_537}, {20: 1_327_579_008},
     _voc("4, 395, 985", "1, 458, 910, 247", "17.59", ("4, 390, 537", "1, 455, 190, 895", "17.57")))
_add("yolov3-mobilenetv3", "yolov3-mobilenetv3.cfg", 80, "yolov3", "mobilenetv3-large", "SPURS",
     "cfg/yolov3-mobilenet/yolov3-mobilenet-coco.cfg", SPURS, {80: 24_209_877}, {80: 9_019_723_936},
     _spurs("23.09", "numel/2^20", "32.2"))
_add("yolov3tiny-mobilenetv3-small", "yolov3tiny-mobilenetv3-small.cfg", 80, "yolov3-tiny", "mobilenetv3-small",
     "SPURS", "cfg/yolov3tiny-mobilenet-small/yolov3tiny-mobilenet-small-coco.cfg", SPURS, {80: 3_041_430}, {80: 796_067_296},
     _spurs("2.92", "(P+2BNch)/2^20", "2.9"))
_add("yolov3-ghostnet", "yolov3-ghostnet.cfg", 10, "yolov3", "ghostnet", "HALO", "cfg/ghost-yolov3-visdrone.cfg",
     HALO, {10: 23_495_111}, {10: 8_486_820_528},
     [_fig("params_m", "23.49", 10, None, "numel/1e6", _HALO_MAIN)])
_add("yolov3-shufflenetv2", "yolov3-shufflenetv2.cfg", 1, "yolov3-tiny", "shufflenetv2-1.5x", "HALO",
     "cfg/yolov3-shufflenetv2-hand.cfg (commit 341575d)", HALO, {1: 5_077_821, 10: 5_098_611}, {1: 1_984_617_856, 10: 1_991_626_624},
     [_fig("params_m", "5.07", 1, None, "numel/1e6", _HALO_HAND),
      _fig("params_m", "5.09", 10, None, "numel/1e6", _HALO_VIS)])
_add("yolov3-tiny-se", "yolov3-tiny-se.cfg", 1, "yolov3-tiny", "darknet-tiny+se", "HALO",
     "cfg/yolov3-tiny-hand-se.cfg (commit 341575d)", HALO, {1: 8_802_036}, {1: 2_721_090_560},
     # HALO's 8.933M (8,933,108) counts an SE branch its forward never runs (131,072 params, arch-anchors §7);
     # our SE holds only what runs
     [_fig("params_m", "8.933", 1, None, "unreproducible", _HALO_ATT)])
_add("yolov3-tiny-cbam", "yolov3-tiny-cbam.cfg", 1, "yolov3-tiny", "darknet-tiny+cbam", "HALO",
     "cfg/yolov3-tiny-hand-cbam.cfg (commit 341575d)", HALO, {1: 8_801_046}, {1: 2_721_238_194},
     # published 8.81M does not follow from the code (8,801,046 -> 8.80M), arch-anchors §3
     [_fig("params_m", "8.81", 1, None, "unreproducible", _HALO_ATT)])
_add("yolov3-tiny-eca", "yolov3-tiny-eca.cfg", 1, "yolov3-tiny", "darknet-tiny+eca", "HALO",
     "cfg/yolov3-tiny-hand-eca.cfg (commit 341575d)", HALO, {1: 8_669_879}, {1: 2_720_962_560},
     [_fig("params_m", "8.67", 1, None, "numel/1e6", _HALO_ATT)])


def cfg_path(name: str) -> Path:
    """The cfg file of a registered zoo model (KeyError listing the known names for an unknown one)."""
    return MODELS.get(name)


def build(name: str, classes: int | None = None) -> Darknet:
    """Build a zoo model from its cfg; ``classes=None`` keeps the registry's default class count
    (``MODELS.entry(name).meta["classes"]``), otherwise every ``[yolo]`` head is resized to ``classes``."""
    from .darknet import Darknet

    meta = MODELS.entry(name).meta
    return Darknet.from_cfg(cfg_path(name), classes=meta["classes"] if classes is None else classes)
