"""Perturbation attack: the forget profiles' image-memory questions asked about a perturbed
portrait (cropped, noised, rescaled, recoloured, mildly enough that the face is still the
same person) and every forget question rephrased again (another paraphrase from the pool),
evaluated without retraining. Retain items and image-understanding images are left as they
are: a colour shift changes the answer to "what colour is the shirt?".

The attacked benchmark is OUT/bench: the original's files linked, eval.jsonl rewritten, the
perturbed images under images/perturbed/ (a pure function of the benchmark and the seed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import templates as T
from ..schema import Bench, QAItem, write_jsonl

if TYPE_CHECKING:
    from PIL import Image


def perturb_image(im: Image.Image, rng: random.Random) -> Image.Image:
    """Crop to 85-95 % (random offset), rescale down to 60-80 % and back, add Gaussian noise
    (sigma 6/255), shift hue and brightness slightly; returns a new RGB image of the same size."""
    import numpy as np
    from PIL import Image, ImageEnhance

    im = im.convert("RGB")
    w, h = im.size
    f = rng.uniform(0.85, 0.95)
    cw, ch = max(1, round(w * f)), max(1, round(h * f))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)
    s = rng.uniform(0.6, 0.8)
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    hsv = np.asarray(im.convert("HSV")).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + rng.randint(-8, 8)) % 256  # ~ +-11 degrees of hue
    im = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.9, 1.1))
    arr = np.asarray(im).astype(np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0.0, 6.0, arr.shape)
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8), "RGB")


def rephrase(it: QAItem, name: str | None, rng: random.Random) -> str:
    """Another question of the item's paraphrase pool than the one it has (the same when the
    pool has no other)."""
    if it.task == "image_understanding":
        pool = list(T.UNDERSTANDING[it.attribute][1])
        options = [q for q in pool if q != it.question]
        return rng.choice(options) if options else it.question
    qs = T.EVAL_MEMORY[it.attribute][1]
    subjects = [name] if it.task == "text_memory" and name else list(T.IMAGE_SUBJECTS)
    options = [q for q in {q.format(s=s) for q in qs for s in subjects} if q[:1].upper() + q[1:] != it.question]
    pick = rng.choice(sorted(options)) if options else it.question
    return pick[:1].upper() + pick[1:]


def perturbed_bench(bench: Bench, split: str, out: Path, seed: int) -> dict:
    """Write the attacked benchmark to `out` (temporary sibling, then renamed); returns counts."""
    from PIL import Image

    forget = set(bench.split(split).forget)
    names = {p.id: p.name for p in bench.profiles()}
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images" / "perturbed").mkdir(parents=True)
    root = bench.root.resolve()
    for entry in root.iterdir():  # everything but eval.jsonl and the manifest is the original's
        if entry.name in ("manifest.json", "images", bench.manifest.files.get("eval", "eval.jsonl")):
            continue
        os.symlink(entry, tmp / entry.name)
    for sub in (root / "images").iterdir():
        os.symlink(sub, tmp / "images" / sub.name)
    items, n_img, n_q = [], 0, 0
    for it in bench.qa("eval"):
        if it.profile_id in forget:
            rng = random.Random(f"smfa-perturb:{seed}:{it.id}")
            q = rephrase(it, names.get(it.profile_id or ""), rng)
            n_q += q != it.question
            it = replace(it, question=q)
            if it.task == "image_memory" and it.image:
                rel = f"images/perturbed/{it.id}.png"
                with Image.open(root / it.image) as im:
                    perturb_image(im, rng).save(tmp / rel, format="PNG")
                it = replace(it, image=rel)
                n_img += 1
        items.append(it)
    write_jsonl(tmp / bench.manifest.files.get("eval", "eval.jsonl"), [i.to_dict() for i in items])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["perturbed_from"] = str(root)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"images": n_img, "questions": n_q}
