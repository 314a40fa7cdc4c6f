"""Generate a model-shaped benchmark set: base, fine-tuned-forget, fine-tuned-anchor (bf16).

    python benchmarks/shaped_set.py --shape qwen2.5-1.5b --out bench-data/q15

Each is a HF-style checkpoint directory (config.json + shards of <= 5 GB + index), written
tensor by tensor with smfa's streaming writer, so sets larger than RAM can be generated.
The fine-tunes are base + small bf16 noise (different seeds), like two full fine-tunes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from smfa_core.safetensors_io import SafetensorsWriter, write_index  # noqa: E402

SHAPES = {
    # hidden, intermediate, layers, heads, kv_heads, vocab, tied embeddings
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True),
    "qwen2.5-7b": (3584, 18944, 28, 28, 4, 152064, False),
    "tiny": (256, 704, 2, 4, 2, 4096, True),
}


def tensor_list(shape: str) -> list[tuple[str, tuple[int, ...]]]:
    h, inter, layers, heads, kvh, vocab, tied = SHAPES[shape]
    hd = h // heads
    out = [("model.embed_tokens.weight", (vocab, h))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.q_proj.bias", (h,)),
            (p + "self_attn.k_proj.weight", (kvh * hd, h)), (p + "self_attn.k_proj.bias", (kvh * hd,)),
            (p + "self_attn.v_proj.weight", (kvh * hd, h)), (p + "self_attn.v_proj.bias", (kvh * hd,)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (inter, h)), (p + "mlp.up_proj.weight", (inter, h)),
            (p + "mlp.down_proj.weight", (h, inter)),
        ]
    out.append(("model.norm.weight", (h,)))
    if not tied:
        out.append(("lm_head.weight", (vocab, h)))
    return out


def write_checkpoint(path: str, shape: str, seed: int, noise: float, max_shard: int = 5 * 10**9) -> int:
    os.makedirs(path, exist_ok=True)
    ents = tensor_list(shape)
    shards: list[list] = [[]]
    size = 0
    for n, s in ents:
        b = math.prod(s) * 2
        if shards[-1] and size + b > max_shard:
            shards.append([])
            size = 0
        shards[-1].append((n, s))
        size += b
    files = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    total = 0
    for fn, sh in zip(files, shards):
        with SafetensorsWriter(os.path.join(path, fn), [(n, "BF16", s) for n, s in sh]) as w:
            for n, s in sh:
                gb = torch.Generator().manual_seed(zlib.crc32(f"{n}:base".encode()))  # base: same for every set
                gn = torch.Generator().manual_seed(zlib.crc32(f"{n}:{seed}".encode()))
                rows = max(1, (1 << 24) // (s[-1] if len(s) > 1 else s[0]))
                nrows = s[0] if len(s) > 1 else 1
                for r0 in range(0, nrows, rows):
                    r1 = min(nrows, r0 + rows)
                    cs = (r1 - r0, *s[1:]) if len(s) > 1 else s
                    x = torch.randn(cs, generator=gb) * 0.02
                    if noise:
                        x += torch.randn(cs, generator=gn) * noise
                    w.write(n, x.to(torch.bfloat16))
                weight_map[n] = fn
                total += math.prod(s) * 2
        with open(os.path.join(path, fn), "rb") as fh:  # leave the page cache cold
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    write_index(path, weight_map, total)
    h, inter, layers, heads, kvh, vocab, tied = SHAPES[shape]
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": h,
                   "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
                   "num_key_value_heads": kvh, "vocab_size": vocab, "tie_word_embeddings": tied,
                   "torch_dtype": "bfloat16", "rms_norm_eps": 1e-6, "max_position_embeddings": 32768}, fh)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-1.5b")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for name, seed, noise in (("base", 0, 0.0), ("forget", 1, 1e-3), ("anchor", 2, 1e-3)):
        p = os.path.join(args.out, name)
        if os.path.exists(os.path.join(p, "model.safetensors.index.json")):
            print(f"{p}: exists")
            continue
        n = write_checkpoint(p, args.shape, seed, noise)
        print(f"{p}: {n / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
