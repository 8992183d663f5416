"""``python -m yolocomp detect``: run a model on an image or a folder, save annotated images + detections.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import seaborn as sns
from PIL import Image, ImageDraw
from torch import nn

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.images import image_size, is_image, list_images
from yolocomp.data.writers import atomic_write_text
from yolocomp.data.yolo_txt import read_names
from yolocomp.errors import InputError
from yolocomp.eval.cli import load_model
from yolocomp.eval.predict import predict


def detect(model: nn.Module, source: str | Path, out_dir: str | Path, img_size: int, conf_thres: float = 0.25,
           iou_thres: float = 0.45, names: list[str] | None = None, device: str = "cpu") -> list[dict]:
    """Detect objects in ``source`` (an image file or a folder of images, sorted by name).

    Single-label NMS as the seeds' detect.py. Writes ``out_dir/<image name>`` with the boxes drawn and
    ``out_dir/detections.json``; returns the same records: ``{"file", "width", "height", "detections":
    [{"box": [x1, y1, x2, y2] original-image pixels, "score", "class", "name"}]}``. ``names`` defaults to
    ``class<k>``.
    """
    source, out_dir = Path(source), Path(out_dir)
    if source.is_dir():
        files = list_images(source)
    elif source.is_file() and is_image(source):
        files = [source]
    else:
        raise InputError(source, "not an image file or a folder")
    if not files:
        raise InputError(source, "folder holds no images")
    nc = model.yolo_layers[0].classes
    names = list(names) if names is not None else [f"class{k}" for k in range(nc)]
    if len(names) != nc:
        raise InputError(None, f"{len(names)} class names given for a {nc}-class model")
    recs = [ImageRecord(f, *image_size(f), np.zeros((0, 4)), np.zeros(0), None, image_id=i)
            for i, f in enumerate(files)]
    preds = predict(model, DetectionSet(source.name, names, recs, source=source), img_size, batch_size=8,
                    device=device, conf_thres=conf_thres, iou_thres=iou_thres, multi_label=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = [tuple(int(255 * c) for c in rgb) for rgb in sns.color_palette("tab10", max(nc, 1))]
    records = []
    for rec, p in zip(recs, preds):
        dets = [{"box": [round(v, 2) for v in b.tolist()], "score": round(float(s), 5), "class": int(c),
                 "name": names[int(c)]} for b, s, c in zip(p["boxes"], p["scores"], p["labels"])]
        records.append({"file": str(rec.file), "width": rec.width, "height": rec.height, "detections": dets})
        with Image.open(rec.file) as im:
            im = im.convert("RGB")
        draw = ImageDraw.Draw(im)
        for d in dets:
            col = colours[d["class"] % len(colours)]
            draw.rectangle(d["box"], outline=col, width=2)
            draw.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['name']} {d['score']:.2f}", fill=col)
        tmp = out_dir / f".{rec.file.name}.tmp{rec.file.suffix}"
        im.save(tmp)
        tmp.replace(out_dir / rec.file.name)
    atomic_write_text(out_dir / "detections.json", json.dumps(records, indent=1))
    return records


def cli_detect(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (seeds' detect.py flags), run :func:`detect`, print a line per image. Returns 0."""
    ap = argparse.ArgumentParser(prog="python -m yolocomp detect", description=detect.__doc__.split("\n")[0])
    ap.add_argument("--cfg", help="Darknet cfg (not needed for a .pt checkpoint)")
    ap.add_argument("--weights", required=True, help=".weights (Darknet) or .pt (yolocomp checkpoint)")
    ap.add_argument("--source", required=True, help="image file or folder")
    ap.add_argument("--output", default="results/detect")
    ap.add_argument("--names", help=".names file (one class per line)")
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--conf-thres", type=float, default=0.25)
    ap.add_argument("--iou-thres", type=float, default=0.45)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    model = load_model(a.cfg, a.weights, a.device)
    names = read_names(Path(a.names)) if a.names else None
    for r in detect(model, a.source, a.output, a.img_size, a.conf_thres, a.iou_thres, names, a.device):
        print(f"{Path(r['file']).name}: {len(r['detections'])} detections")
    print(f"wrote {Path(a.output) / 'detections.json'}")
    return 0
