"""`smfa reproduce`: the paper end to end, as resumable steps under one OUT directory.

    bench/                      smfa bench build (seeded)
    base/                       tokenizer trained on the bench's text + a random model
    pretrain/model              stage 1: people who are in no split, general images
    original/model              stage 2: the benchmark's fine-tuning set (the "original")
    unlearn/SPLIT/METHOD/       smfa unlearn (SMFA keeps ΔW_f and ΔW_a: forget/, anchor/)
    sculpt/SPLIT/VARIANT/model  re-sculpts of SMFA's saved deltas (MFA, C-only, R-only, k-sweep)
    eval/SPLIT/MODEL/PHRASING/  smfa eval (paraphrase = the evaluation's wordings; template =
                                the fine-tuning wordings, "seen phrasing")
    results.json                one record per number; report.md, figures: views of it
    run.json                    command, seed, preset, versions, machine, wall time per step

SMFA follows the paper: one ΔW_f trained on D_f^idk ∪ D_r^few, an anchor trained separately on
D_r^few, the mask of §3 with ρ per tensor (Eq. 8), merged once. MFA is ΔW_f merged unsculpted;
the ablation and the k-sweep re-sculpt the same saved deltas, never retrain. Opt-in rows on the
ablation split: `smfa:per_modality` ([protocol] modality_ablation) and `smfa:public`
([protocol] public_variant: the public re-implementation's SMFA, smfa_methods/methods/smfa_public.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..schema import Bench
from .labels import ORIGINAL, method_settings, model_path, step_label
from .preset import Preset
from .results import PHRASINGS, ceilings, records_from_items, write_results
from .steps import Steps
from .training import train_stage, unlearn_run, write_full_retain

# SMFA variants made by re-sculpting the saved deltas: label -> (mode, k or None = preset k)
ABLATION = {"mfa": ("none", None), "smfa:conflict": ("conflict", None), "smfa:magnitude": ("magnitude", None)}


class Reproduction:
    """The steps of one (preset, seed) run under `out`."""

    def __init__(self, preset: Preset, out: Path, seed: int, *, progress: bool | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.preset, self.out, self.seed, self.progress, self.log = preset, out, seed, progress, log
        out.mkdir(parents=True, exist_ok=True)
        self.steps = Steps(out, log)
        self.records: list[dict] = []
        self._ceilings: dict[str, dict[str, float]] = {}
        self._items: dict[tuple[str, str], dict[str, Path]] = {}  # (split, phrasing) -> label -> items.jsonl
        self._smfa_k: dict[str, float | None] = {}

    def _bars(self) -> bool:
        """Evaluation bars: as asked, or (auto) on a terminal."""
        import sys

        return self.progress if self.progress is not None else sys.stderr.isatty()

    # -- the model ------------------------------------------------------------------------
    def bench(self) -> Bench:
        from ..build import build

        cfg = {"seed": self.seed, **self.preset.bench}
        d = self.steps.run("bench", cfg, lambda tmp: build(tmp, overwrite=True, seed=self.seed, **self.preset.bench))
        return Bench(d)

    def original(self, bench: Bench, stages: tuple[str, ...] = ("pretrain", "original")) -> Path:
        """The model every method unlearns from: a local checkpoint ([model] path) or one built
        from scratch and trained in the two stages (`stages`: the first of them only, to get
        the model the original's stage starts from)."""
        p = self.preset
        if "path" in p.model:
            base = model_path(p)
        else:
            from .base_model import build_base

            shape = {k: v for k, v in p.model.items() if k != "vocab_size"}
            cfg = {"arch": p.arch, "seed": self.seed, **p.model}
            base = self.steps.run("base", cfg, lambda tmp: build_base(
                bench.root, tmp, arch=p.arch, vocab_size=p.model["vocab_size"], seed=self.seed, **shape) and None,
                reads=("bench",))
        model, reads = base, ("bench", "base") if "path" not in p.model else ("bench",)
        for name in stages:
            stage = getattr(p, name)
            if stage is None:
                continue
            src = model
            d = self.steps.run(name, {"stage": asdict(stage), "seed": self.seed, "from": str(src)},
                               lambda tmp, st=stage, s=src, n=name: train_stage(
                                   bench, s, st, tmp, seed=self.seed, progress=self.progress, launch=p.launch, step=n),
                               reads=reads)
            model, reads = d / "model", (*reads, name)
        self._model_reads = reads
        return model

    # -- unlearning -------------------------------------------------------------------------
    def unlearn(self, bench: Bench, original: Path, split: str, method: str, lr: float, options: dict,
                tag: str = "", retain: str = "few") -> Path:
        """`retain`: "few" (the split's D_r^few) or "full" (every profile outside the forget
        set, written to the step's retain_full.jsonl)."""
        name = f"unlearn/{split}/{method}{tag}"
        cfg = {"method": method, "split": split, "lr": lr, "options": options, "unlearn": asdict(self.preset.unlearn),
               "seed": self.seed}
        if retain != "few":  # only then, so that every other step keeps the fingerprint it had
            cfg["retain"] = retain

        def build(tmp: Path) -> dict:
            data = write_full_retain(bench, split, tmp / "retain_full.jsonl") if retain == "full" else None
            return unlearn_run(method, original, bench, split, tmp, self.preset.unlearn, lr=lr, options=options,
                               seed=self.seed, progress=self.progress, retain=data, launch=self.preset.launch,
                               step=name)

        return self.steps.run(name, cfg, build, reads=self._model_reads)

    def sculpt(self, original: Path, smfa_dir: Path, split: str, label: str, mode: str, k: float,
               tag: str = "") -> Path:
        from smfa_methods.sculpting import sculpt_and_merge

        name = f"sculpt/{split}/{step_label(label)}"
        reads = (*self._model_reads, f"unlearn/{split}/smfa{tag}")

        def build(tmp: Path) -> dict:
            rep = sculpt_and_merge(smfa_dir / "forget", smfa_dir / "anchor", k=k, base=original, out=tmp / "model",
                                   mode=mode)
            return {"masked_pct": rep["totals"]["masked_pct"]}

        return self.steps.run(name, {"mode": mode, "k": k}, build, reads=reads) / "model"

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, bench: Bench, model: Path, split: str, label: str, reads: tuple[str, ...],
                 k: float | None = None, phrasings: tuple[str, ...] = tuple(PHRASINGS)) -> None:
        from ..evaluate import run_eval
        from ..judges import get_judge

        pr = self.preset.protocol
        for phrasing in phrasings:
            name = f"eval/{split}/{step_label(label)}/{phrasing}"
            privacy = pr.privacy and phrasing == "paraphrase"  # privacy_steps.py; off: configs as before

            def build(tmp: Path, phrasing: str = phrasing, privacy: bool = privacy) -> None:
                run_eval(bench.root, split, tmp, judge=get_judge("heuristic"), judge_name="heuristic",
                         model=str(model), batch_size=16, max_new_tokens=pr.max_new_tokens, limit=pr.eval_limit,
                         method=label, k=k, progress=self._bars(), items_file=PHRASINGS[phrasing], privacy=privacy)

            d = self.steps.run(name, {"split": split, "label": label, "phrasing": phrasing, "limit": pr.eval_limit,
                                      "max_new_tokens": pr.max_new_tokens, **({"privacy": True} if privacy else {})},
                               build, reads=reads)
            if phrasing not in self._ceilings:
                self._ceilings[phrasing] = ceilings(bench, PHRASINGS[phrasing])
            self.records += records_from_items(d / "items.jsonl", model=label, split=split, phrasing=phrasing,
                                               seed=self.seed, ceiling=self._ceilings[phrasing], k=k)
            if not label.startswith("smfa@"):  # the k-sweep is a figure, not a row to compare
                self._items.setdefault((split, phrasing), {})[label] = d / "items.jsonl"
            if label == "smfa":
                self._smfa_k[split] = k
            if privacy:
                from .privacy_records import records_from_run

                self.records += records_from_run(d, model=label, split=split, phrasing=phrasing, seed=self.seed, k=k)

    # -- the whole run ----------------------------------------------------------------------
    def run(self) -> Path:
        p = self.preset
        bench = self.bench()
        if p.protocol.sequential:  # a request count the split cannot meet fails now, not after training
            from ..sequential import request_groups

            request_groups(bench.split(p.protocol.ablation_split).forget, p.protocol.sequential)
        oracle_splits = [s for s in p.protocol.oracle_split_list() if s in p.protocol.splits]
        if oracle_splits:
            # the oracles need only the original's starting point: trained first, so that a second
            # process sharing OUT (steps.py) can train the original meanwhile; one that another
            # process is training now is left to privacy_split, which waits for it
            from .privacy_steps import oracle_model

            self.original(bench, stages=("pretrain",))
            for split in oracle_splits:
                if not self.steps.busy(f"oracle/{split}"):
                    oracle_model(self, bench, split)
        original = self.original(bench)
        reads = self._model_reads
        for split in p.protocol.splits:
            self.evaluate(bench, original, split, ORIGINAL, reads)
            smfa_k = None
            unlearned = {}
            for method in p.methods:
                lr, opts = method_settings(p, method)
                d = self.unlearn(bench, original, split, method, lr, opts)
                k = opts.get("k") if method == "smfa" else None
                self.evaluate(bench, d / "model", split, method, (*reads, f"unlearn/{split}/{method}"), k=k)
                unlearned[method] = (d / "model", (*reads, f"unlearn/{split}/{method}"))
                if method == "smfa":
                    smfa_k = opts.get("k", 1.0)
                    self._smfa_variants(bench, original, d, split, smfa_k)
            if split in p.protocol.oracle_split_list():
                from .privacy_steps import privacy_split

                privacy_split(self, bench, split, unlearned)
        if p.protocol.sequential:
            from .sequential_steps import sequential_steps

            self.records += sequential_steps(self, bench, original, p.protocol.ablation_split)
        from .uncertainty import paired_records

        for (split, phrasing), items in self._items.items():  # SMFA against every other row, item by item
            self.records += paired_records(items, reference="smfa", split=split, phrasing=phrasing, seed=self.seed,
                                           k=self._smfa_k.get(split))
        results = write_results(self.records, self.out / "results.json")
        from .report import write_report

        write_report(self.out, p, self.seed, self.records, self.steps)
        return results

    def _smfa_variants(self, bench: Bench, original: Path, smfa_dir: Path, split: str, k: float) -> None:
        p = self.preset
        base_reads = (*self._model_reads, f"unlearn/{split}/smfa")
        variants = {"mfa": ABLATION["mfa"]}
        if split == p.protocol.ablation_split:
            variants.update(ABLATION)
        for label, (mode, _) in variants.items():
            m = self.sculpt(original, smfa_dir, split, label, mode, k)
            self.evaluate(bench, m, split, label, (*base_reads, f"sculpt/{split}/{step_label(label)}"),
                          k=None if mode == "none" else k)
        if split == p.protocol.ablation_split:
            for kk in p.protocol.k_sweep:
                if kk == k:
                    continue
                label = f"smfa@k={kk:g}"
                m = self.sculpt(original, smfa_dir, split, label, "both", kk)
                self.evaluate(bench, m, split, label, (*base_reads, f"sculpt/{split}/{label}"), k=kk,
                              phrasings=("paraphrase",))
        if split == p.protocol.ablation_split and p.protocol.modality_ablation:
            self._per_modality(bench, original, split, k)
        if split == p.protocol.ablation_split and p.protocol.public_variant:
            self._public(bench, original, split, k)

    def _per_modality(self, bench: Bench, original: Path, split: str, k: float) -> None:
        """smfa with image-memory and text-memory forget deltas sculpted separately (retrained:
        two forget deltas, not a re-sculpt), evaluated as the row `smfa:per_modality`."""
        lr, opts = method_settings(self.preset, "smfa")
        tag, label = "-per_modality", "smfa:per_modality"
        d = self.unlearn(bench, original, split, "smfa", lr, {**opts, "per_modality": True}, tag=tag)
        self.evaluate(bench, d / "model", split, label, (*self._model_reads, f"unlearn/{split}/smfa{tag}"), k=k)

    def _public(self, bench: Bench, original: Path, split: str, k: float) -> None:
        """smfa as the public re-implementation has it (variant=public: the anchor trained jointly
        with a multimodal-view and a text-view forget delta, each sculpted with its own k, then
        averaged), on the retain data `[protocol] public_retain` names (default: the whole retain
        split, as the re-implementation does), evaluated as the row `smfa:public`."""
        lr, opts = method_settings(self.preset, "smfa")
        opts = {key: v for key, v in opts.items() if key != "per_modality"}  # its own two deltas instead
        tag, label = "-public", "smfa:public"
        d = self.unlearn(bench, original, split, "smfa", lr, {**opts, "variant": "public"}, tag=tag,
                         retain=self.preset.protocol.public_retain)
        self.evaluate(bench, d / "model", split, label, (*self._model_reads, f"unlearn/{split}/smfa{tag}"), k=k)
