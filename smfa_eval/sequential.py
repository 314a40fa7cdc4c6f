"""Forget requests that arrive one after another (`smfa bench run --sequential N`).

A split's forget profiles are cut into N requests (in the split's order, as equal as
possible). Each request is unlearned from the model the previous request produced (SMFA: a
new forget adapter and anchor against the current model, sculpt, merge) with the split's
few-shot retain set, and the result is evaluated after every request. Two ways to ask:

* `request`: request i's forget file holds request i's profiles only (a deletion service that
  handles each request as it comes);
* `cumulative`: request i's forget file holds requests 1..i (one growing forget set, still
  applied to the previous request's model).

Records (`sequential.json`, and the reproduction's results.json) carry "request": i (0 = the
model before any request) and "mode"; sets: `forgotten` (profiles requested so far),
`pending` (not yet requested), `forget` (all of the split's), `retain`, `unseen`; tasks:
`memory` (image + text memory), `image_understanding`, `general_understanding`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from .bootstrap import bootstrap_ci
from .judges import Judge
from .schema import Bench, BenchDataError

if TYPE_CHECKING:
    from smfa_methods.job import TrainConfig

MODES = ("request", "cumulative")
CURVES = (("forgotten", "memory", "forgotten profiles: memory ROUGE-L (lower = forgotten)"),
          ("retain", "memory", "retain profiles: memory ROUGE-L"),
          ("all", "image_understanding", "understanding of the profiles' images ROUGE-L"),
          ("unseen", "general_understanding", "unseen images ROUGE-L"))


def request_groups(forget: Sequence[str], n: int) -> list[list[str]]:
    """`forget` cut into n consecutive requests whose sizes differ by at most one."""
    if n < 1 or n > len(forget):
        raise BenchDataError(f"--sequential {n}: the split has {len(forget)} forget profiles (need 1..{len(forget)})")
    q, r = divmod(len(forget), n)
    out, start = [], 0
    for i in range(n):
        size = q + (1 if i < r else 0)
        out.append(list(forget[start:start + size]))
        start += size
    return out


def write_request_files(bench: Bench, split: str, groups: list[list[str]], out: Path, mode: str) -> list[Path]:
    """One forget JSONL per request (the split's forget rows of that request's profiles, or
    of every request so far when `mode` is cumulative)."""
    if mode not in MODES:
        raise BenchDataError(f"--sequential-forget {mode!r}: expected one of {list(MODES)}")
    sp = bench.split(split)
    if not sp.forget_file:
        raise BenchDataError(f"{bench.root / 'manifest.json'}: split {split!r} names no forget_file")
    rows = [json.loads(x) for x in (bench.root / sp.forget_file).read_text(encoding="utf-8").splitlines() if x.strip()]
    for r in rows:  # the request files live outside the benchmark: their images are named absolutely
        if r.get("image"):
            r["image"] = str((bench.root / r["image"]).resolve())
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(groups)):
        ids = {p for g in (groups[:i + 1] if mode == "cumulative" else [groups[i]]) for p in g}
        sel = [r for r in rows if r.get("profile_id") in ids]
        if not sel:
            raise BenchDataError(f"{bench.root / sp.forget_file}: no rows for request {i + 1} ({sorted(ids)})")
        path = out / f"request{i + 1}_forget.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in sel), encoding="utf-8")
        tmp.replace(path)
        paths.append(path)
    return paths


def sequential_records(items_path: Path, *, model: str, split: str, request: int, groups: list[list[str]],
                       mode: str, seed: int = 0, phrasing: str = "paraphrase", k: float | None = None) -> list[dict]:
    """The curves' points of one evaluation (items.jsonl) after `request` requests (`k`: the
    method's k, kept on the records as on every other SMFA record)."""
    rows = [json.loads(x) for x in items_path.read_text(encoding="utf-8").splitlines() if x.strip()]
    done = {p for g in groups[:request] for p in g}
    every = {p for g in groups for p in g}

    def in_set(r: dict, s: str) -> bool:
        pid = r.get("profile_id")
        return {"forgotten": pid in done, "pending": pid in every - done, "forget": r["set"] == "forget",
                "retain": r["set"] == "retain", "unseen": r["set"] == "unseen",
                "all": r["set"] in ("forget", "retain")}[s]

    tasks = {"memory": ("image_memory", "text_memory"), "image_understanding": ("image_understanding",),
             "general_understanding": ("general_understanding",)}
    base = {"model": model, "split": split, "request": request, "mode": mode, "phrasing": phrasing, "seed": seed,
            **({"k": k} if k is not None else {})}
    out = []
    for s in ("forgotten", "pending", "forget", "retain", "all", "unseen"):
        for t, ts in tasks.items():
            sel = [r for r in rows if r["task"] in ts and in_set(r, s)]
            for metric, key in (("rougeL", "rougeL_f"), ("fact", "fact")):
                vals = [r[key] for r in sel if r.get(key) is not None]
                if not vals:
                    continue
                lo, hi = bootstrap_ci(vals, f"seq|{split}|{s}|{t}|{phrasing}|{seed}|{metric}|{request}")
                out.append({**base, "set": s, "task": t, "metric": metric, "value": round(fmean(vals), 6),
                            "n": len(vals), "ci_low": round(lo, 6), "ci_high": round(hi, 6)})
    return out


def _get(records: list[dict], **where: Any) -> dict | None:
    hits = [r for r in records if all(r.get(k) == v for k, v in where.items())]
    return hits[0] if hits else None


def sequential_table(records: list[dict], split: str, metric: str = "rougeL") -> str:
    """Rows: method x request; columns: the curves (value ± half the 95 % interval)."""
    recs = [r for r in records if r.get("request") is not None and r["split"] == split and r["metric"] == metric]
    models = list(dict.fromkeys(r["model"] for r in recs))
    n_req = max((r["request"] for r in recs), default=0)
    out = ["| method | request | " + " | ".join(f"{s} {t}" for s, t, _ in CURVES) + " |",
           "|---" * (len(CURVES) + 2) + "|"]
    for m in models:
        for i in range(n_req + 1):
            cells = []
            for s, t, _ in CURVES:
                r = _get(recs, model=m, request=i, set=s, task=t)
                cells.append("-" if r is None else f"{r['value']:.3f} ± {(r['ci_high'] - r['ci_low']) / 2:.3f}")
            out.append(f"| {m} | {i} | " + " | ".join(cells) + " |")
    return "\n".join(out) + (f"\n\n{metric} after each forget request ({split}); request 0 = the model before any. "
                             "forgotten = profiles requested so far (none at 0); ± = half the 95 % bootstrap "
                             "interval.\n")


def sequential_figure(records: list[dict], split: str, path: Path, metric: str = "rougeL") -> Path:
    """Plot each model's `metric` after every forget request, one panel per curve; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records if r.get("request") is not None and r["split"] == split and r["metric"] == metric]
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, (s, t, title) in zip(axes, CURVES):
        for m in dict.fromkeys(r["model"] for r in recs):
            pts = sorted((r["request"], r["value"]) for r in recs if r["model"] == m and r["set"] == s
                         and r["task"] == t)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("forget requests")
        ax.set_xticks(sorted({r["request"] for r in recs}))
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Sequential forget requests ({split})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_sequential(data: str | Path, split: str, model: str | Path, methods: Sequence[str], out: str | Path,
                   n: int, *, mode: str = "request", judge: Judge, judge_name: str, judge_options: dict | None = None,
                   train: TrainConfig | None = None, method_options: dict[str, dict] | None = None, batch_size: int = 8,
                   max_new_tokens: int = 64, limit: int | None = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> Path:
    """`bench run --sequential N`: OUT/<method>/request<i>/{unlearn,eval}, OUT/start/eval (the
    model before any request), OUT/report/sequential.{md,json,png}; resumable as bench run."""
    from smfa_methods.job import TrainConfig
    from smfa_methods.registry import get_method

    from .evaluate import run_eval
    from .run import VANILLA, _unlearned_model

    bench = Bench(data)
    sp = bench.split(split)
    if not methods:
        raise BenchDataError("--sequential needs at least one --method")
    if len(set(methods)) != len(methods) or VANILLA in methods:
        raise BenchDataError(f"methods must be distinct and not {VANILLA!r}: {list(methods)}")
    stray = sorted(set(method_options or {}) - set(methods))
    if stray:
        raise BenchDataError(f"options given for {', '.join(stray)}, which is not among the methods run")
    resolved = {m: get_method(m).resolve_options((method_options or {}).get(m, {})) for m in methods}
    train = train or TrainConfig()
    train.validate()
    groups = request_groups(sp.forget, n)
    if mode not in MODES:
        raise BenchDataError(f"--sequential-forget {mode!r}: expected one of {list(MODES)}")
    out = Path(out)
    forget_files = write_request_files(bench, split, groups, out / "requests", mode)
    retain = bench.root / (sp.retain_file or "")

    def evaluate(model_dir: Path, eval_dir: Path, label: str, opts: dict) -> Path:
        log(f"{label}: evaluating {model_dir} -> {eval_dir}")
        run_eval(bench.root, split, eval_dir, judge=judge, judge_name=judge_name, judge_options=judge_options,
                 model=str(model_dir), batch_size=batch_size, max_new_tokens=max_new_tokens, limit=limit,
                 method=label, k=opts.get("k"), mode=opts.get("mode"), progress=progress)
        return eval_dir / "items.jsonl"

    start = evaluate(Path(model), out / "start" / "eval", "start", {})
    records = []
    for m in methods:
        records += sequential_records(start, model=m, split=split, request=0, groups=groups, mode=mode)
        current = Path(model)
        for i, forget in enumerate(forget_files, 1):
            d = out / m / f"request{i}"
            current = _unlearned_model(m, current, forget, retain, d / "unlearn", train, resolved[m], log)
            items = evaluate(current, d / "eval", m, resolved[m])
            records += sequential_records(items, model=m, split=split, request=i, groups=groups, mode=mode)
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    (rep / "sequential.json").write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    png = sequential_figure(records, split, rep / "sequential.png")
    md = rep / "sequential.md"
    md.write_text(f"# Sequential forget requests: {split}, {n} requests ({mode})\n\n"
                  + "\n".join(f"- request {i + 1}: {', '.join(g)}" for i, g in enumerate(groups)) + "\n\n"
                  + sequential_table(records, split) + "\n" + sequential_table(records, split, "fact")
                  + f"\n![{png.stem}]({png.name})\n", encoding="utf-8")
    return md
