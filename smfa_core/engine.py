"""The streaming engine behind `smfa sculpt`, `smfa merge` and `smfa inspect`.

Per tensor of the forget delta: a norms pass (block sums combined exactly), then one
fused mask/sculpt/merge pass, both over block-aligned element chunks read into reused
buffers. Outputs are streamed tensor by tensor into files whose headers were computed up
front, inside a temporary sibling directory that is renamed into place only at the end.
Peak memory is a few chunks, whatever the model size.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ._ops import BLOCK, MODES
from .atomic import AtomicOutput, cleanup_stale
from .backends import get_backend
from .errors import SmfaError
from .guard import guard_outputs
from .krules import as_rules, describe, resolve_ks
from .names import match_names
from .outputs import ShardedWriter, WriteBehind, copy_adapter_files, copy_base_files, shard_plan
from .placement import Placement
from .prefetch import Prefetcher
from .report import Report
from .safetensors_io import Checkpoint, SafetensorsWriter, write_index
from .scaled import ScaledSource, check_scale
from .sources import MASK_FILE, DeltaSource, LoraSource, open_source
from .tensor_api import FLOAT_DTYPES, check_k, check_mode, check_options, exact_sum, rho_of, threshold

EMITS = ("delta", "merged", "mask", "adapter")
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30


MAX_CHUNK_MB = 16384  # fp32-equivalent MiB; the engine streams, no model needs larger chunks


def chunk_elems(chunk_mb: float) -> int:
    """Elements per chunk: chunk_mb of fp32, rounded down to whole norm blocks (>= 1)."""
    if not (0 < chunk_mb <= MAX_CHUNK_MB):  # also NaN and inf
        raise SmfaError(f"--chunk-mb must be in (0, {MAX_CHUNK_MB}], got {chunk_mb}")
    n = int(chunk_mb * 2**20) // 4
    return max(BLOCK, n // BLOCK * BLOCK)


def chunk_ranges(numel: int, step: int) -> Iterator[tuple[int, int]]:
    for s in range(0, numel, step):
        yield s, min(numel, s + step)


class _Buffers:
    """Reused output buffers, one per (role, dtype): allocated once per run."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, role: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        key = (role, dtype)
        if key not in self._bufs:
            self._bufs[key] = torch.empty(self.step, dtype=dtype)
        return self._bufs[key][:n]


@dataclass
class _Item:
    """One tensor to sculpt: its name, shape, and what it reads from."""

    name: str
    shape: tuple[int, ...]
    numel: int
    has_anchor: bool
    ss_f: float = 0.0
    ss_a: float = 0.0
    k: float | None = None  # this tensor's k (the run's k, or the k rule it matched)


def progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, leave=False)
    bar.bytes_read = 0  # what the run read, for the report
    return bar


def _check_float(src_label: str, path: str, name: str, dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise SmfaError(f"{path}: tensor {name!r} of the {src_label} has dtype {dtype}, "
                        "not a floating type smfa can sculpt (bf16, fp16, fp32)")


def plan_items(fsrc: DeltaSource, asrc: DeltaSource | None, base: Checkpoint | None,
          missing_anchor: str) -> list[_Item]:
    """Validate everything that can be validated before any output exists."""
    anchor_names = set(asrc.names()) if asrc is not None else set()
    base_names = set(base.names()) if base is not None else set()
    items = []
    for name in fsrc.names():
        shape = tuple(fsrc.shape(name))
        _check_float("forget delta", fsrc.path, name, fsrc.dtype(name))
        has_anchor = False
        if asrc is not None:
            if name in anchor_names:
                has_anchor = True
                ashape = tuple(asrc.shape(name))
                if ashape != shape:
                    raise SmfaError(f"tensor {name!r}: shape {list(shape)} in the forget delta "
                                    f"({fsrc.path}) but {list(ashape)} in the anchor ({asrc.path})")
                _check_float("anchor delta", asrc.path, name, asrc.dtype(name))
            elif missing_anchor != "keep":
                raise SmfaError(f"tensor {name!r} of the forget delta ({fsrc.path}) is missing from the "
                                f"anchor ({asrc.path}); pass --missing-anchor keep to keep it unmasked")
        if base is not None:
            if name not in base_names:
                raise SmfaError(f"tensor {name!r} of the delta is not in the base checkpoint {base.path}")
            info = base.info(name)
            if tuple(info.shape) != shape:
                raise SmfaError(f"tensor {name!r}: shape {list(shape)} in the delta ({fsrc.path}) but "
                                f"{list(info.shape)} in the base ({base.path})")
            _check_float("base", base.path, name, info.torch_dtype)
        items.append(_Item(name, shape, math.prod(shape), has_anchor))
    if not items:
        raise SmfaError(f"the forget delta {fsrc.path} holds no tensors")
    return items


def tensor_sumsq(src: DeltaSource, item: _Item, be, step: int, label: str, bar, pl: Placement) -> float:
    sums = []
    for i, (s, e) in enumerate(chunk_ranges(item.numel, step)):
        slot = i % pl.depth
        pl.sync(slot)  # the slot's staging buffers are free again
        x, xb = src.read(item.name, s, e)
        sums.append(be.sumsq_blocks(pl.put(slot, "x", x), pl.put(slot, "xb", xb)))
        pl.record(slot)
        nbytes = (e - s) * x.element_size() * (1 if xb is None else 2)
        bar.update(nbytes)
        bar.bytes_read += nbytes
    total = exact_sum(torch.cat(sums)) if sums else 0.0
    if not math.isfinite(total):
        raise SmfaError(f"tensor {item.name!r} of the {label} delta ({src.path}) has NaN or Inf values")
    return total


def check_finite(name: str, checks: list[tuple[str, torch.Tensor]]) -> None:
    """Raise naming `name` when a written chunk holds NaN or Inf: `checks` pairs each output
    with the counts of the sculpt_chunk call that wrote it, whose third entry is the number
    of non-finite values it wrote (counted in the kernel's own pass: no extra read)."""
    for what, counts in checks:
        if int(counts[2]):
            why = ("NaN/Inf in the delta or the base, or base + delta overflows the base dtype"
                   if what.startswith("merged") else "NaN/Inf in the inputs, or a --delta-dtype it overflows")
            raise SmfaError(f"tensor {name!r}: the {what} has NaN or Inf values ({why}); nothing was "
                            "written. Pass --allow-nonfinite to write it anyway")


def open_inputs(forget: str, anchor: str | None, base: str | None, forget_kind: str,
                 anchor_kind: str) -> tuple[DeltaSource, DeltaSource | None, Checkpoint | None]:
    for label, p in (("--forget", forget), ("--anchor", anchor), ("--base", base)):
        if p is not None and not os.path.exists(p):
            raise SmfaError(f"{label} {p}: no such file or directory")
    base_ckpt = _LastChunk(Checkpoint(base)) if base is not None else None
    targets = base_ckpt.names() if base_ckpt is not None else None
    fsrc = open_source(forget, kind=forget_kind, base=base_ckpt, target_names=targets, label="forget")
    asrc = None
    if anchor is not None:
        asrc = open_source(anchor, kind=anchor_kind, base=base_ckpt, target_names=targets, label="anchor")
        if targets is None:  # no base: pair the anchor's tensors with the forget delta's names
            pairs = match_names(fsrc.names(), asrc.names(), source_label=f"forget ({forget})",
                                target_label=f"anchor ({anchor})", strict=False)
            asrc = _Renamed(asrc, pairs)
    return fsrc, asrc, base_ckpt


class _LastChunk:
    """The base checkpoint, remembering its last chunk: the forget pair, the anchor pair and
    the merge all read the same base chunk, from one read. Everything else is delegated."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self._ckpt = ckpt
        self._key: tuple[str, int, int] | None = None
        self._buf = torch.empty(0, dtype=torch.uint8)
        self._view: torch.Tensor | None = None

    def __getattr__(self, attr: str):
        return getattr(self._ckpt, attr)

    def read_into(self, name: str, out: torch.Tensor | None, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Elements [start, stop) of `name`, in this object's own buffer (`out` is not used):
        valid until a read of another chunk."""
        stop = self._ckpt.info(name).numel if stop is None else stop
        if self._key != (name, start, stop):
            nbytes = (stop - start) * self._ckpt.info(name).itemsize
            if self._buf.numel() < nbytes:
                self._buf = torch.empty(nbytes, dtype=torch.uint8)
            self._view = self._ckpt.read_into(name, self._buf, start, stop)
            self._key = (name, start, stop)
        return self._view


class _Renamed(DeltaSource):
    """A source seen under other names (forget name -> the source's own name)."""

    def __init__(self, src: DeltaSource, names: dict[str, str]) -> None:
        self._src, self._own = src, names
        self.path, self.kind = src.path, src.kind

    def names(self) -> list[str]:
        return list(self._own)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._src.shape(self._own[name])

    def dtype(self, name: str) -> torch.dtype:
        return self._src.dtype(self._own[name])

    def read(self, name: str, start: int, stop: int):
        return self._src.read(self._own[name], start, stop)

    def compute_on(self, device) -> None:
        if hasattr(self._src, "compute_on"):
            self._src.compute_on(device)

    def close(self) -> None:
        self._src.close()


def sculpt(
    forget: str,
    anchor: str | None,
    *,
    k: float | None = None,
    k_rules=None,
    out: str,
    base: str | None = None,
    emit: Sequence[str] | str | None = None,
    mode: str = "both",
    eps: float = 1e-8,
    rho_scope: str = "tensor",
    backend: str = "auto",
    chunk_mb: float = 64,
    missing_anchor: str = "error",
    scale: float = 1.0,
    forget_kind: str = "auto",
    anchor_kind: str = "auto",
    delta_dtype: str | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    report_path: str | None = None,
    progress: bool = False,
    command: str = "sculpt",
    device: str = "cpu",
    allow_nonfinite: bool = False,
    _staged: bool | None = None,
) -> Report:
    """Sculpt the forget delta against the anchor and write `emit` outputs into `out`.

    emit: any of "delta" (sculpted dense delta), "merged" (HF checkpoint: base + sculpted,
    needs `base`), "mask" (bit-packed masks), "adapter" (a masked adapter: the forget LoRA
    adapter's files + the masks, see sources.MaskedAdapterSource; needs a LoRA forget delta).
    Default: merged with a base, else delta.
    `anchor=None` merges the forget delta unmasked (the `smfa merge` command).
    `k_rules` (krules: KRule objects or 'REGEX=K' strings): a k per tensor, first fullmatch on
    its name wins, `k` for the rest (without `k`, an unmatched tensor is an error); neither
    given: k = 1. `scale`: the forget delta is read as scale·ΔW_f (`smfa merge --scale`).
    `device` ("cpu", "cuda", "cuda:1"): where the kernels run; on a GPU chunks stream through
    pinned buffers, two in flight (see placement.py); memory stays bounded by chunk_mb.
    Returns the report, also written to OUT/smfa_report.json (and report_path if given).
    A NaN or Inf in a written tensor (from the inputs, or a merge overflowing the base dtype)
    is an error naming the tensor, with nothing published, unless `allow_nonfinite`.
    """
    t0 = time.perf_counter()
    rules = as_rules(k_rules)
    if k is None and not rules:
        k = 1.0
    if k is not None:
        check_k(k)
    check_scale(scale)
    imode = check_mode(mode) if anchor is not None else MODES["none"]
    check_options(eps=eps, rho_scope=rho_scope, missing_anchor=missing_anchor)
    emits = (("merged",) if base else ("delta",)) if not emit else ((emit,) if isinstance(emit, str) else tuple(emit))
    for e in emits:
        if e not in EMITS:
            raise SmfaError(f"--emit must be among {', '.join(EMITS)}, got {e!r}")
    if "merged" in emits and base is None:
        raise SmfaError("--emit merged needs --base (the model to merge into)")
    if "adapter" in emits and ("merged" in emits or "delta" in emits):
        raise SmfaError("--emit adapter writes an adapter directory: combine it with mask only, not delta/merged")
    out_dtype = None
    if delta_dtype is not None:
        out_dtype = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                     "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}.get(delta_dtype)
        if out_dtype is None:
            raise SmfaError(f"--delta-dtype must be fp32, bf16 or fp16, got {delta_dtype!r}")
    guard_outputs({"--delta" if command == "merge" else "--forget": forget, "--anchor": anchor, "--base": base},
                  {"--out": out, "--report": report_path}, files=("--report",))
    # Leftovers of runs that were killed: their temp dirs go, a parked old output comes back.
    cleanup_stale(os.path.dirname(os.path.abspath(out)))
    if os.path.exists(out) and not overwrite:
        raise SmfaError(f"--out {out} exists; pass --overwrite to replace it")

    pl = Placement(device, staged=_staged)
    be = get_backend(backend, pl.device.type)
    step = chunk_elems(chunk_mb)
    fsrc, asrc, base_ckpt = open_inputs(forget, anchor, base, forget_kind, anchor_kind)
    if scale != 1.0:  # 1: the source itself, so the bits are the unscaled path's
        fsrc = ScaledSource(fsrc, scale)
    try:
        if pl.cuda:  # LoRA deltas are expanded on the GPU: only their factors cross PCIe
            for src in (fsrc, asrc):
                if hasattr(src, "compute_on"):
                    src.compute_on(pl.device)
        if "adapter" in emits and not isinstance(fsrc, LoraSource):
            raise SmfaError(f"--emit adapter needs a LoRA adapter as --forget; {forget} is a {fsrc.kind} source "
                            "(use --emit delta or --emit mask)")
        items = plan_items(fsrc, asrc, base_ckpt, missing_anchor)
        ks = resolve_ks([it.name for it in items], rules, k) if rules else {}
        for it in items:
            it.k = ks.get(it.name, k)
        report = Report(
            command=command,
            options={"k": k, "mode": mode if anchor is not None else "none", "eps": eps,
                     "rho_scope": rho_scope, "emit": list(emits), "chunk_mb": chunk_mb,
                     "missing_anchor": missing_anchor, "device": str(pl.device),
                     **({"k_rules": describe(rules)} if rules else {}),
                     **({"scale": scale} if scale != 1.0 else {})},
            sources={"forget": {"path": forget, "kind": fsrc.kind},
                     "anchor": None if asrc is None else {"path": anchor, "kind": asrc.kind},
                     "base": base},
            backend=be.NAME,
        )
        with AtomicOutput(out, overwrite=overwrite) as tmp:
            _run(fsrc, asrc, base_ckpt, items, tmp, emits, imode, k, eps, rho_scope, be, step,
                 out_dtype, max_shard_bytes, progress, report, pl, allow_nonfinite=allow_nonfinite)
            report.seconds = time.perf_counter() - t0
            report.outputs = {e: out for e in emits}
            if pl.staged:
                report.extra["staging_bytes"] = pl.staging_bytes()
            report.write_json(os.path.join(tmp, "smfa_report.json"))
        if report_path:
            report.write_json(report_path)
        return report
    finally:
        fsrc.close()
        if asrc is not None:
            asrc.close()
        if base_ckpt is not None:
            base_ckpt.close()


def _run(fsrc, asrc, base, items, tmp, emits, imode, k, eps, rho_scope, be, step, out_dtype,
         max_shard_bytes, progress, report: Report, pl: Placement, *, allow_nonfinite: bool = False) -> None:
    by_name = {it.name: it for it in items}
    need_norms = asrc is not None
    total_bytes = sum(it.numel * 2 for it in items) * (2 if need_norms else 1)
    bar = progress_bar(total_bytes, progress, report.command)
    bufs = _Buffers(step)

    if need_norms and rho_scope == "global":
        for it in items:
            it.ss_f = tensor_sumsq(fsrc, it, be, step, "forget", bar, pl)
            if it.has_anchor:
                it.ss_a = tensor_sumsq(asrc, it, be, step, "anchor", bar, pl)
        g_rho = rho_of(sum(i.ss_f for i in items), sum(i.ss_a for i in items if i.has_anchor), eps)
        report.extra["rho_global"] = g_rho

    # Tensors are processed in the base's file order when merging (its shards are rewritten
    # in that order), else in the forget delta's; every output file is declared in it.
    merged_order = None
    if "merged" in emits:
        copy_base_files(base, tmp)
        merged_order = [(fn, [n for n in base.names() if base.file_of(n) == fn]) for fn in base.files]
        order = [n for _, names in merged_order for n in names if n in by_name]
    else:
        order = [it.name for it in items]

    # Output writers with every header planned up front.
    delta_w = None
    mask_ws = []  # mask.safetensors (--emit mask) and/or the masked adapter's masks
    if "delta" in emits:
        ents = [(n, out_dtype or fsrc.dtype(n), by_name[n].shape) for n in order]
        delta_w = ShardedWriter(tmp, shard_plan(ents, "delta", max_shard_bytes))
    if "adapter" in emits:
        copy_adapter_files(fsrc, tmp)
    mask_files = (["mask.safetensors"] if "mask" in emits else []) + ([MASK_FILE] if "adapter" in emits else [])
    for fn in mask_files:
        ents = [(n, torch.uint8, ((by_name[n].numel + 7) // 8,)) for n in order]
        meta = {"smfa.mask": "bitpacked-little", "smfa.shapes": json.dumps({n: list(by_name[n].shape) for n in order})}
        if fn == MASK_FILE:
            meta["smfa.masked_adapter"] = json.dumps(dict(report.options, forget=report.sources["forget"]["path"]))
        mask_ws.append(ShardedWriter(tmp, [(fn, ents)], metadata=meta))
    mask_w = mask_ws[0] if mask_ws else None

    merged_writers = {}
    if merged_order is not None:
        for fn, names in merged_order:
            ents = [(n, base.info(n).dtype, tuple(base.info(n).shape)) for n in names]
            merged_writers[fn] = (ents, base.metadata(fn))

    def inputs_of(name: str) -> list[tuple[str, int, int]]:
        ranges = list(fsrc.byte_ranges(name))
        if asrc is not None and by_name[name].has_anchor:
            ranges += asrc.byte_ranges(name)
        if base is not None and "merged" in emits:
            ranges.append(base.byte_range(name))
        return list(dict.fromkeys(ranges))  # the base once, however many sources read it

    def sculpt_item(it: _Item, write_merged) -> None:
        if need_norms and it.has_anchor:
            if rho_scope == "tensor":
                it.ss_f = tensor_sumsq(fsrc, it, be, step, "forget", bar, pl)
                it.ss_a = tensor_sumsq(asrc, it, be, step, "anchor", bar, pl)
                rho = rho_of(it.ss_f, it.ss_a, eps)
            else:
                rho = report.extra["rho_global"]
            t = threshold(it.k, rho)
            mode_i = imode
        else:
            rho, t, mode_i = None, 0.0, MODES["none"]
        pending: deque = deque()
        counts = []

        def finish() -> None:
            slot, writes, c, checks = pending.popleft()
            pl.sync(slot)
            check_finite(it.name, checks)
            for write, host in writes:
                wb.write(write, it.name, host)
                report.bytes_written += host.numel() * host.element_size()
            counts.append(c)

        for i, (s, e) in enumerate(chunk_ranges(it.numel, step)):
            n, slot = e - s, i % pl.depth
            if len(pending) == pl.depth:
                finish()

            def outbuf(role: str, dtype: torch.dtype, _n: int = n, _slot: int = slot) -> torch.Tensor:
                return pl.out(_slot, role, dtype, _n) if pl.staged else bufs.get(role, dtype, _n)

            f, fb = fsrc.read(it.name, s, e)
            bar.bytes_read += sum(x.numel() * x.element_size() for x in (f, fb) if x is not None)
            f, fb = pl.put(slot, "f", f), pl.put(slot, "fb", fb)
            if it.has_anchor:
                a, ab = asrc.read(it.name, s, e)
                bar.bytes_read += sum(x.numel() * x.element_size() for x in (a, ab) if x is not None)
                a, ab = pl.put(slot, "a", a), pl.put(slot, "ab", ab)
            else:
                a, ab = f, fb  # unused by mode none; same shape keeps the kernel simple
            mask = outbuf("mask", torch.uint8, (n + 7) // 8) if mask_w is not None else None
            writes = []
            checks = []  # (output, counts of the call that wrote it): checked before it is written
            c = None
            if delta_w is not None:
                o = outbuf("delta", out_dtype or fsrc.dtype(it.name))
                c = be.sculpt_chunk(f, fb, a, ab, t, mode_i, None, o, mask)
                checks.append(("delta output", c))
                writes.append((delta_w.write, pl.fetch(slot, "delta", o)))
            if write_merged is not None:
                w_dtype = base.info(it.name).torch_dtype
                w = base.read_into(it.name, None, s, e)  # the chunk the deltas' pairs just read
                bar.bytes_read += w.numel() * w.element_size()
                o = outbuf("merged", w_dtype)
                c = be.sculpt_chunk(f, fb, a, ab, t, mode_i, pl.put(slot, "w", w), o, mask if c is None else None)
                checks.append((f"merged output ({w_dtype})", c))
                writes.append((write_merged, pl.fetch(slot, "merged", o)))
            if c is None:  # mask only: the forget values a masked adapter keeps must be finite too
                o = outbuf("delta", torch.float32)
                c = be.sculpt_chunk(f, fb, a, ab, t, mode_i, None, o, mask)
                checks.append(("forget delta (written unmasked)", c))
            if mask_w is not None:
                host_mask = pl.fetch(slot, "mask", mask)
                writes += [(w_.write, host_mask) for w_ in mask_ws]
            pl.record(slot)
            pending.append((slot, writes, c, [] if allow_nonfinite else checks))
            bar.update(n * 2)
        while pending:
            finish()
        counts = torch.stack(counts).sum(0).tolist() if counts else [0, 0, 0]
        numel = it.numel
        report.tensors.append({
            "name": it.name, "shape": list(it.shape), "numel": numel,
            "norm_f": math.sqrt(it.ss_f) if need_norms else None,
            "norm_a": math.sqrt(it.ss_a) if need_norms and it.has_anchor else None,
            "rho": rho, "k": it.k if rho is not None else None, "t": t if rho is not None else None,
            "conflict": counts[0], "masked": counts[1],
            "conflict_pct": 100.0 * counts[0] / numel if numel else 0.0,
            "masked_pct": 100.0 * counts[1] / numel if numel else 0.0,
            "anchor": "present" if it.has_anchor else ("missing (kept)" if asrc is not None else "none"),
        })

    wb = WriteBehind(step * 4)
    ahead = Prefetcher()
    for name in order:  # everything, in order; it stays a bounded distance ahead
        ahead.ahead(inputs_of(name))
    try:
        if merged_order is None:
            for name in order:
                sculpt_item(by_name[name], None)
                ahead.used(sum(e - s for _, s, e in inputs_of(name)))
        else:
            for fn, names in merged_order:
                ents, meta = merged_writers[fn]
                w = SafetensorsWriter(os.path.join(tmp, fn), ents, metadata=meta)
                reader = base.reader(fn)
                for name in names:
                    if name in by_name:
                        sculpt_item(by_name[name], w.write)
                        ahead.used(sum(e - s for _, s, e in inputs_of(name)))
                        continue
                    info = base.info(name)  # untouched: byte copy, read straight into a write buffer
                    for bs, be_ in chunk_ranges(info.nbytes, step * 4):
                        buf = wb.acquire()
                        wb.submit(w.write, name, reader.read_bytes_into(name, buf, bs, be_), buf)
                        report.bytes_written += be_ - bs
                        bar.bytes_read += be_ - bs
                wb.call(w.close)
            if base.index_path is not None:  # same shard layout and index as the base
                weight_map = {n: base.file_of(n) for n in base.names()}
                total = sum(base.info(n).nbytes for n in base.names())
                wb.call(functools.partial(write_index, metadata=dict(base.index_metadata),
                                          filename=os.path.basename(base.index_path)), tmp, weight_map, total)
        if delta_w is not None:
            wb.call(delta_w.close, "delta.safetensors.index.json")
        for w_ in mask_ws:
            wb.call(w_.close, None)
        wb.drain()
    finally:
        ahead.close()
        wb.close()
    report.bytes_read = bar.bytes_read
    bar.close()


def merge(base: str, delta: str, *, out: str, **kw) -> Report:
    """base + delta (dense, LoRA or checkpoint), out of core, as a HF checkpoint."""
    return sculpt(delta, None, base=base, out=out, emit="merged", command="merge", **kw)


