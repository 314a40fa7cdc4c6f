"""Do the vision tower's outputs encode what the understanding questions ask? A probe.

For a model trained by `benchmarks/vision_probe.py` (OUT/VARIANT holds bench/, base/ and
train/model), take the vision features the language model reads (the merger's output for
each of an image's tokens, concatenated) for 400 general images, and fit an L2-regularised
logistic regression per yes/no attribute on the first 300 images; print its accuracy on the
other 100 next to the majority-class rate of those 100. Run for the random base and for the
trained model.

    python benchmarks/vision_linear_probe.py OUT/VARIANT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ATTRIBUTES = ("glasses", "hat", "smiling", "earrings")


def probe_accuracy(x: torch.Tensor, labels: list[bool], train_frac: float = 0.75) -> float:
    """Held-out accuracy of an L2-regularised logistic regression (LBFGS, standardised inputs)."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(labels, dtype=torch.float32)
    n = int(train_frac * len(y))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x[:n] @ w + b, y[:n]) + 1e-2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x[n:] @ w + b > 0).float() == y[n:]).float().mean())


def vision_features(model_dir: Path, images: list[Path]) -> torch.Tensor:
    """The merger output of every image (Qwen2.5-VL-shaped models), flattened per image."""
    from PIL import Image

    from smfa_methods.models import load_model

    loaded = load_model(model_dir)
    model, proc = loaded.model.eval(), loaded.processor
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), 50):
            ims = [Image.open(p).convert("RGB") for p in images[i:i + 50]]
            ip = proc.image_processor(images=ims, return_tensors="pt")
            emb = model.model.visual(ip["pixel_values"], grid_thw=ip["image_grid_thw"])
            emb = getattr(emb, "pooler_output", emb)
            feats.append(emb.reshape(len(ims), emb.shape[0] // len(ims), -1).flatten(1))
    return torch.cat(feats).float()


def main() -> None:
    root = Path(sys.argv[1])
    bench = root / "bench"
    attrs: dict[str, dict[str, str]] = {}
    for line in (bench / "general.jsonl").open():
        r = json.loads(line)
        if r["attribute"] in ATTRIBUTES:
            attrs.setdefault(r["image"], {})[r["attribute"]] = r["keys"][0]
    paths = sorted(attrs)[:400]
    for which in ("base", "train/model"):
        x = vision_features(root / which, [bench / p for p in paths])
        cells = []
        for a in ATTRIBUTES:
            y = [attrs[p].get(a) == "yes" for p in paths]
            test = y[int(0.75 * len(y)):]
            majority = max(sum(test), len(test) - sum(test)) / len(test)
            cells.append(f"{a} {probe_accuracy(x, y):.2f} (majority {majority:.2f})")
        print(f"{which}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
