"""`make demo`: the sculpt job end to end on an embedded, offline example.

Builds a tiny Llama-architecture model with transformers (random init, saved with
save_pretrained, two shards), trains two real PEFT LoRA adapters on it for a few steps
(the forget adapter learns refusals for "forget" prompts, the anchor adapter the
"retain" answers), runs `smfa sculpt --emit merged` through the CLI, prints the report,
and loads the merged model back with `from_pretrained` to check that it equals
round(base + sculpted delta) bit for bit.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch

SEED = 0
VOCAB = 256


def build_base(path: str) -> None:
    """Save a tiny random bf16 Llama (2 layers, in several small shards) at `path`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      torch_dtype="bfloat16")
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path, max_shard_size="200KB")


def train_adapter(base: str, out: str, prompts: torch.Tensor, answers: torch.Tensor, seed: int) -> None:
    """Train a LoRA adapter on prompts -> answers (loss on the answers, 40 steps) and save it to `out`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    ids = torch.cat([prompts, answers], dim=1)
    labels = ids.clone()
    labels[:, : prompts.shape[1]] = -100  # loss on the answers only
    for _ in range(40):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    print(f"  trained {os.path.basename(out)}: final loss {loss.item():.3f}")


def main() -> int:
    """Run the demo: base, forget and anchor adapters, `smfa sculpt`, check the merge; returns the exit code."""
    from click.testing import CliRunner
    from transformers import AutoModelForCausalLM

    from smfa_cli.main import cli

    workdir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="smfa-demo-")
    os.makedirs(workdir, exist_ok=True)
    base, forget, anchor, out = (os.path.join(workdir, n) for n in ("base", "forget_lora", "anchor_lora", "sculpted"))
    print(f"smfa demo in {workdir}")
    print("1. tiny base model (Llama architecture, bf16, 2 shards)")
    build_base(base)
    g = torch.Generator().manual_seed(SEED)
    forget_q = torch.randint(3, VOCAB, (16, 8), generator=g)
    retain_q = torch.randint(3, VOCAB, (16, 8), generator=g)
    refusal = torch.randint(3, VOCAB, (1, 6), generator=g).repeat(16, 1)
    retain_a = torch.randint(3, VOCAB, (16, 6), generator=g)
    print("2. forget adapter ΔW_f (refusals on the forget set + retain few-shot) and anchor ΔW_a (retain)")
    train_adapter(base, forget, torch.cat([forget_q, retain_q]), torch.cat([refusal, retain_a]), seed=1)
    train_adapter(base, anchor, retain_q, retain_a, seed=2)
    print(f"3. smfa sculpt --forget {forget} --anchor {anchor} --k 1.0 --base {base} --out {out}")
    res = CliRunner().invoke(cli, ["sculpt", "--forget", forget, "--anchor", anchor, "--k", "1.0",
                                   "--base", base, "--out", out, "--emit", "merged", "--emit", "delta",
                                   "--overwrite", "--no-progress"])
    print(res.output)
    if res.exit_code != 0:
        print("sculpt failed", file=sys.stderr)
        return 1
    print("4. load the merged model back with from_pretrained; check it is round(base + sculpted delta)")
    from safetensors.torch import load_file

    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).state_dict()
    orig = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16).state_dict()
    delta = load_file(os.path.join(out, "delta.safetensors"))  # the sculpted ΔW_f, fp32
    for name, w in orig.items():
        expect = (w.float() + delta[name]).to(torch.bfloat16) if name in delta else w
        if not torch.equal(merged[name], expect):
            print(f"  MISMATCH in {name}", file=sys.stderr)
            return 1
    masked = sum(int((delta[n] == 0).sum()) for n in delta)
    print(f"  {len(delta)} tensors sculpted and merged ({masked:,} entries of ΔW_f masked); "
          f"{len(orig) - len(delta)} tensors byte-identical to the base: OK")
    print(f"  report: {os.path.join(out, 'smfa_report.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
