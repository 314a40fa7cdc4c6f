"""A checkpoint whose processor_config names the stock VLM processor (as real ones do) still
loads where its video processor cannot (no torchvision here)."""

from __future__ import annotations

import json

import pytest

from smfa_methods import models, tiny


@pytest.mark.parametrize("kind,stock", [("qwen2_5_vl", "Qwen2_5_VLProcessor"),
                                        ("llava_onevision", "LlavaOnevisionProcessor")])
def test_stock_processor_name_loads_with_images(tmp_path, kind, stock):
    path = tiny.make_tiny(kind, tmp_path / kind)
    pc = path / "processor_config.json"
    cfg = json.loads(pc.read_text())
    cfg["processor_class"] = stock
    pc.write_text(json.dumps(cfg))
    loaded = models.load_model(path)
    assert hasattr(loaded.processor, "image_processor")
