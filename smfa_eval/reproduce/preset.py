"""Reproduction presets: small TOML files (`presets/NAME.toml`, or any path), read into one
validated object before anything runs, so a typo fails in the first second, naming the key.

Sections: `arch`; `[bench]` (smfa bench build's options); `[model]` (the from-scratch shape,
or `path` = a local checkpoint directory for the `paper` preset); `[pretrain]` and
`[original]` (the two training stages: data sources and budget); `[unlearn]` (the budget every
method shares); `[methods]` (name -> options); `[protocol]` (splits, ablation, k-sweep,
evaluation size, seeds); `[tune]` (the development-seed grid and its selection rule);
`[launch]` (paper only: the launcher that runs each training step on the GPUs, while
`smfa reproduce` itself stays one process; see launch.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

PRESET_DIR = Path(__file__).parent / "presets"
ARCHS = ("qwen2_5_vl", "llava_onevision")
# Training data sources: files of the benchmark (reworded.jsonl split by whether an item is
# about a profile), each optionally sampled, e.g. "general:0.25".
DATA_SOURCES = ("finetune", "reworded_memory", "reworded_general", "general", "pretrain")
SPLITS = ("forget05", "forget10", "forget15")
# The from-scratch shape: build_base's arguments (smfa_methods.tiny.tiny_config's sizes).
MODEL_KEYS = ("vocab_size", "hidden", "layers", "heads", "kv_heads", "intermediate", "vision_hidden", "vision_layers")


class PresetError(ValueError):
    """A preset that cannot run; the message names the file and key."""


@dataclass(frozen=True)
class Stage:
    """One training stage: data sources and budget (every parameter trained: the base is new)."""

    data: tuple[str, ...]
    max_steps: int
    lr: float
    batch_size: int
    mode: str = "all"        # every parameter (a model built from scratch); "lora" for a real base
    lora_r: int = 64
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01


@dataclass(frozen=True)
class Unlearn:
    mode: str = "full"
    epochs: float = 5.0
    lr: float = 1e-3
    batch_size: int = 8
    lora_r: int = 8
    lora_alpha: int = 16
    bf16: bool = False


@dataclass(frozen=True)
class Protocol:
    splits: tuple[str, ...] = SPLITS
    ablation_split: str = "forget10"
    k_sweep: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    eval_limit: int | None = None
    max_new_tokens: int = 48
    dev_seed: int = 1
    test_seed: int = 0
    # also run smfa with per-modality forget deltas (the method's per_modality option, k_image /
    # k_text from [methods.smfa]) on the ablation split, next to the single-delta smfa row
    modality_ablation: bool = False
    # forget requests one after another on the ablation split (0 = off; smfa_eval/sequential.py)
    sequential: int = 0
    sequential_methods: tuple[str, ...] = ()  # default: every method of [methods]
    sequential_forget: str = "request"  # or "cumulative": one growing forget set
    privacy: bool = False               # oracle, MCQ / truth ratio / MIA ... (privacy_steps.py)
    attacks: tuple[str, ...] = ()       # of relearn, int8, int4, perturb (needs privacy)
    # the splits that get a retrained oracle (forget quality) and the attacks; default: every
    # split. Each oracle costs one more run of the original's stage, so a small machine may
    # name the ablation split only; MCQ / truth ratio / MIA / over-refusal still cover every split.
    oracle_splits: tuple[str, ...] = ()
    # also run the public re-implementation's SMFA (the method's variant = "public": the anchor
    # trained jointly with two forget views, the two sculpted deltas averaged) on the ablation
    # split, as the row smfa:public; public_retain: its retain data, "full" (every profile outside
    # the forget set, as the re-implementation trains on) or "few" (the split's D_r^few)
    public_variant: bool = False
    public_retain: str = "full"

    def oracle_split_list(self) -> tuple[str, ...]:
        """The splits that get an oracle and the attacks (none without privacy)."""
        return (self.oracle_splits or self.splits) if self.privacy else ()


@dataclass(frozen=True)
class Tune:
    split: str = "forget10"
    lr: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    k: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    manu_prune_pct: tuple[float, ...] = (1.0, 3.0, 10.0)
    retain_floor: float = 0.9
    understanding_floor: float = 0.9


LAUNCHERS = ("accelerate launch", "torchrun")


@dataclass(frozen=True)
class Launch:
    """[launch]: how each training step is started (launch.py builds the command). The preset's
    batch sizes stay global: each of the `num_processes` processes trains on batch_size / N."""

    launcher: str
    num_processes: int
    config_file: Path | None = None   # accelerate's --config_file (relative: to the preset's directory)
    args: tuple[str, ...] = ()        # more launcher arguments, e.g. ["--main_process_port", "29600"]

    def describe(self) -> str:
        return f"{self.launcher} x{self.num_processes}"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    arch: str
    source: Path
    bench: dict[str, int]
    model: dict[str, Any]
    pretrain: Stage | None
    original: Stage | None
    unlearn: Unlearn
    methods: dict[str, dict[str, Any]]
    protocol: Protocol
    tune: Tune
    launch: Launch | None = None  # None: every training step runs in this process

    def with_splits(self, splits: tuple[str, ...]) -> Preset:
        """Only these splits (the ablation and k-sweep split must be among them)."""
        if not splits:
            return self
        from dataclasses import replace

        _check(self.protocol.ablation_split in splits, self.source, "--split",
               f"must include the ablation split {self.protocol.ablation_split}")
        return replace(self, protocol=replace(self.protocol, splits=tuple(splits)))

    def with_arch(self, arch: str | None) -> Preset:
        if arch is None or arch == self.arch:
            return self
        _check(arch in ARCHS, self.source, "arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
        from dataclasses import replace

        return replace(self, arch=arch)


def _check(ok: bool, src: Path, key: str, msg: str) -> None:
    if not ok:
        raise PresetError(f"{src}: {key} {msg}")


def _typed(cls, raw: Any, src: Path, section: str):
    """A dataclass from a TOML table: unknown keys and wrong types are errors naming the key."""
    _check(isinstance(raw, dict), src, f"[{section}]", "must be a table")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(names))
    _check(not unknown, src, f"[{section}]", f"has unknown key(s) {unknown}; valid: {sorted(names)}")
    out = {}
    for k, v in raw.items():
        default = getattr(cls, k, None)  # the dataclass default (None for required fields)
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(default, bool) or isinstance(v, bool):
            _check(isinstance(v, bool) and isinstance(default, bool), src, f"{section}.{k}",
                   f"must be true/false, got {v!r}" if isinstance(default, bool) else f"must be a number, got {v!r}")
        elif isinstance(v, (int, float)):
            _check(math.isfinite(v) and v >= 0, src, f"{section}.{k}", f"must be a finite number >= 0, got {v!r}")
        elif isinstance(v, tuple):
            for x in v:
                _check(isinstance(x, (str, int, float)) and not isinstance(x, bool), src, f"{section}.{k}",
                       f"holds {x!r}, not a string or number")
                if isinstance(x, (int, float)):
                    _check(math.isfinite(x) and x >= 0, src, f"{section}.{k}", f"holds {x!r}, not finite >= 0")
        out[k] = v
    try:
        return cls(**out)
    except TypeError as exc:
        raise PresetError(f"{src}: [{section}] {exc}") from None


def _stage(raw: Any, src: Path, section: str) -> Stage | None:
    if raw is None:
        return None
    st = _typed(Stage, raw, src, section)
    for d in st.data:
        name, _, frac = str(d).partition(":")
        _check(name in DATA_SOURCES, src, f"{section}.data", f"source {name!r} is not one of {list(DATA_SOURCES)}")
        if frac:
            try:
                ok = 0 < float(frac) <= 1
            except ValueError:
                ok = False
            _check(ok, src, f"{section}.data", f"{d!r}: the fraction after ':' must be in (0, 1]")
    _check(st.max_steps >= 1 and isinstance(st.max_steps, int), src, f"{section}.max_steps", "must be an integer >= 1")
    _check(0 < st.lr < 1, src, f"{section}.lr", f"must be in (0, 1), got {st.lr}")
    _check(st.batch_size >= 1, src, f"{section}.batch_size", "must be >= 1")
    return st


def _launch(raw: Any, src: Path, stages: dict[str, int]) -> Launch | None:
    """[launch], every key checked. `stages`: section -> batch size, each of which the process
    count must divide (the batch sizes are global, split across the processes)."""
    if raw is None:
        return None
    _check(isinstance(raw, dict), src, "[launch]", "must be a table")
    known = ("launcher", "num_processes", "config_file", "args")
    unknown = sorted(set(raw) - set(known))
    _check(not unknown, src, "[launch]", f"has unknown key(s) {unknown}; valid: {list(known)}")
    launcher = raw.get("launcher")
    _check(launcher in LAUNCHERS, src, "launch.launcher", f"must be one of {list(LAUNCHERS)}, got {launcher!r}")
    n = raw.get("num_processes")
    _check(isinstance(n, int) and not isinstance(n, bool) and n >= 1, src, "launch.num_processes",
           f"must be an integer >= 1, got {n!r}")
    config = raw.get("config_file")
    if config is not None:
        _check(isinstance(config, str) and config != "", src, "launch.config_file", f"must be a path, got {config!r}")
        _check(launcher == "accelerate launch", src, "launch.config_file", "is accelerate's; torchrun takes none")
        config = Path(config) if Path(config).is_absolute() else src.parent / config
        _check(config.is_file(), src, "launch.config_file", f"{config}: no such file")
    args = raw.get("args", [])
    _check(isinstance(args, list) and all(isinstance(a, str) for a in args), src, "launch.args",
           f"must be a list of strings, got {args!r}")
    for a in args:  # these the reproduction sets itself, per step
        flag = a.split("=", 1)[0]
        _check(flag not in ("--num_processes", "--nproc_per_node", "--nproc-per-node", "--config_file", "-m"),
               src, "launch.args", f"must not hold {flag} (set by [launch] itself)")
    if launcher == "torchrun":  # its workers then wait for a rendezvous on port 0 forever (torch 2.x)
        flat = " ".join(args).replace("=", " ").replace("--master-port", "--master_port").split()
        port = flat[flat.index("--master_port") + 1] if "--master_port" in flat[:-1] else None
        _check(port != "0", src, "launch.args", "--master_port 0 makes torchrun's workers hang; give a free port")
    for section, batch in stages.items():
        _check(batch % n == 0, src, "launch.num_processes",
               f"{n} must divide {section}.batch_size {batch} (batch sizes are global: each process trains "
               f"on batch_size / num_processes)")
    return Launch(launcher=launcher, num_processes=n, config_file=config, args=tuple(args))


def load_preset(name_or_path: str) -> Preset:
    """A preset by name (`presets/NAME.toml`) or by path; every field checked."""
    p = Path(name_or_path)
    src = p if p.suffix == ".toml" else PRESET_DIR / f"{name_or_path}.toml"
    if not src.is_file():
        names = ", ".join(sorted(x.stem for x in PRESET_DIR.glob("*.toml")))
        raise PresetError(f"no preset {name_or_path!r} (have {names}, or give a .toml path)")
    try:
        raw = tomllib.loads(src.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"{src}: invalid TOML ({exc})") from None
    known = {"name", "description", "arch", "bench", "model", "pretrain", "original", "unlearn", "methods",
             "protocol", "tune", "launch"}
    unknown = sorted(set(raw) - known)
    _check(not unknown, src, "top level", f"has unknown key(s) {unknown}")
    arch = raw.get("arch", "qwen2_5_vl")
    _check(arch in ARCHS, src, "arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
    methods = _methods(raw.get("methods", {}), src)
    unlearn = _typed(Unlearn, raw.get("unlearn", {}), src, "unlearn")
    _check(unlearn.mode in ("lora", "full"), src, "unlearn.mode", f"must be lora or full, got {unlearn.mode!r}")
    protocol = _protocol(raw.get("protocol", {}), src, methods)
    bench = _bench(raw.get("bench", {}), src)
    model = _model(raw.get("model", {}), src, arch)
    pretrain, original = _stage(raw.get("pretrain"), src, "pretrain"), _stage(raw.get("original"), src, "original")
    batches = {k: st.batch_size for k, st in (("pretrain", pretrain), ("original", original)) if st is not None}
    launch = _launch(raw.get("launch"), src, {**batches, "unlearn": unlearn.batch_size})
    return Preset(
        name=raw.get("name", src.stem), description=raw.get("description", ""), arch=arch, source=src,
        bench=bench, model=model, pretrain=pretrain, original=original, unlearn=unlearn, methods=methods,
        protocol=protocol, tune=_typed(Tune, raw.get("tune", {}), src, "tune"), launch=launch,
    )


def _methods(methods: dict, src: Path) -> dict:
    """The [methods] table: each method known, its options its own, its lr in (0, 1)."""
    _check(isinstance(methods, dict) and all(isinstance(v, dict) for v in methods.values()), src, "[methods]",
           "must map method names to option tables")
    from smfa_methods.errors import MethodError
    from smfa_methods.registry import get_method

    for m, opts in methods.items():
        lr = opts.get("lr", 1e-3)  # `lr`: the method's tuned learning rate; the rest are its options
        _check(isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < 1, src, f"methods.{m}.lr",
               f"must be in (0, 1), got {lr!r}")
        try:
            get_method(m).resolve_options({k: v for k, v in opts.items() if k != "lr"})
        except (MethodError, KeyError) as exc:
            raise PresetError(f"{src}: methods.{m}: {exc}") from None
    return methods


def _protocol(table: dict, src: Path, methods: dict) -> Protocol:
    """The [protocol] table, with every cross-field rule."""
    protocol = _typed(Protocol, table, src, "protocol")
    for s in (*protocol.splits, protocol.ablation_split, *protocol.oracle_splits):
        _check(s in SPLITS, src, "protocol", f"names split {s!r}; valid: {list(SPLITS)}")
    _check(protocol.ablation_split in protocol.splits, src, "protocol.ablation_split", "must be one of the splits")
    _check(isinstance(protocol.sequential, int), src, "protocol.sequential", "must be an integer (0 = off)")
    _check(set(protocol.sequential_methods) <= set(methods), src, "protocol.sequential_methods",
           f"must name methods of [methods] ({sorted(methods)})")
    _check(protocol.sequential_forget in ("request", "cumulative"), src, "protocol.sequential_forget",
           f"must be request or cumulative, got {protocol.sequential_forget!r}")
    bad = sorted(set(protocol.attacks) - {"relearn", "int8", "int4", "perturb"})
    _check(not bad, src, "protocol.attacks", f"has unknown attack(s) {bad}; valid: relearn, int8, int4, perturb")
    _check(protocol.privacy or not protocol.attacks, src, "protocol.attacks", "needs protocol.privacy = true")
    _check(protocol.privacy or not protocol.oracle_splits, src, "protocol.oracle_splits", "needs protocol.privacy = true")
    _check(set(protocol.oracle_splits) <= set(protocol.splits), src, "protocol.oracle_splits",
           f"must name splits of protocol.splits ({list(protocol.splits)})")
    _check(protocol.public_retain in ("full", "few"), src, "protocol.public_retain",
           f"must be full or few, got {protocol.public_retain!r}")
    _check(methods.get("smfa", {}).get("variant", "paper") == "paper", src, "methods.smfa.variant",
           "must stay paper (the smfa row is the paper's); the public variant is its own row: "
           "[protocol] public_variant = true")
    return protocol


def _bench(bench: dict, src: Path) -> dict:
    """The [bench] table: `smfa bench build` arguments, non-negative integers."""
    _check(isinstance(bench, dict) and all(isinstance(v, int) and v >= 0 for v in bench.values()), src, "[bench]",
           "must hold non-negative integers")
    unknown = sorted(set(bench) - {"profiles", "general_images", "image_size", "rewordings", "pretrain_people",
                                   "unseen_images", "holdout"})
    _check(not unknown, src, "[bench]", f"has unknown key(s) {unknown}")
    return bench


def _model(model: dict, src: Path, arch: str) -> dict:
    """The [model] table: a local path (per arch) or the shape of a from-scratch model."""
    _check(isinstance(model, dict), src, "[model]", "must be a table")
    if "path" in model:
        paths = model["path"]
        _check(isinstance(paths, str) or (isinstance(paths, dict) and set(paths) <= set(ARCHS)
                                          and all(isinstance(v, str) for v in paths.values())),
               src, "model.path", f"must be a directory or a table of {list(ARCHS)} -> directory")
        _check(isinstance(paths, str) or arch in paths, src, "model.path", f"has no entry for arch {arch!r}")
    else:
        unknown = sorted(set(model) - set(MODEL_KEYS))
        _check(not unknown, src, "[model]", f"has unknown key(s) {unknown}; valid: {list(MODEL_KEYS)} or path")
        bad = [k for k in MODEL_KEYS if not (isinstance(model.get(k), int) and model.get(k, 0) >= 1)]
        _check(not bad, src, "[model]", f"needs positive integers for {bad}")
    return dict(model)
