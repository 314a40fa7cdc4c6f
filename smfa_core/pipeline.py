"""The streaming pipeline of a sculpt run: outputs planned up front (`plan_outputs`), then per
tensor a norms pass and one fused mask/sculpt/merge pass over chunks, with read-ahead of the
input bytes (prefetch.Prefetcher) and write-behind of the outputs (outputs.WriteBehind).

Order of work (so that outputs are byte-identical whatever the device or backend): tensors in
the base's file order when merging (its shards are rewritten in that order), else in the
forget delta's; chunks of `step` elements; up to `Placement.depth` chunks in flight.
"""

from __future__ import annotations

import functools
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ._ops import MODES
from .outputs import ShardedWriter, WriteBehind, copy_adapter_files, copy_base_files, shard_plan
from .placement import Placement
from .plan import _Item, check_finite, chunk_ranges, progress_bar, tensor_sumsq
from .prefetch import Prefetcher
from .report import Report, tensor_row
from .safetensors_io import Checkpoint, SafetensorsWriter, write_index
from .sources import MASK_FILE, DeltaSource
from .tensor_api import rho_of, threshold

if TYPE_CHECKING:
    from types import ModuleType


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
class RunSpec:
    """Everything a run needs besides its inputs: validated by engine.sculpt."""

    emits: tuple[str, ...]
    imode: int
    eps: float
    rho_scope: str
    step: int
    out_dtype: torch.dtype | None
    max_shard_bytes: int
    progress: bool
    allow_nonfinite: bool = False


@dataclass
class OutputPlan:
    """The tensor order and every output writer, headers planned before any data exists."""

    order: list[str]
    merged_order: list[tuple[str, list[str]]] | None = None  # (base file, its tensor names)
    delta_w: ShardedWriter | None = None
    mask_ws: list[ShardedWriter] = field(default_factory=list)  # mask.safetensors and/or the adapter's masks
    merged_ents: dict[str, tuple[list, dict]] = field(default_factory=dict)  # base file -> (entries, metadata)


def plan_outputs(fsrc: DeltaSource, base: Checkpoint | None, items: list[_Item], tmp: str, spec: RunSpec,
                 report: Report) -> OutputPlan:
    """Copy the base's / adapter's side files into `tmp` and open the writers of every output."""
    by_name = {it.name: it for it in items}
    emits = spec.emits
    if "merged" in emits:
        assert base is not None
        copy_base_files(base, tmp)
        merged_order = [(fn, [n for n in base.names() if base.file_of(n) == fn]) for fn in base.files]
        plan = OutputPlan([n for _, names in merged_order for n in names if n in by_name], merged_order)
        for fn, names in merged_order:
            plan.merged_ents[fn] = ([(n, base.info(n).dtype, tuple(base.info(n).shape)) for n in names],
                                    base.metadata(fn))
    else:
        plan = OutputPlan([it.name for it in items])
    order = plan.order
    if "delta" in emits:
        ents = [(n, spec.out_dtype or fsrc.dtype(n), by_name[n].shape) for n in order]
        plan.delta_w = ShardedWriter(tmp, shard_plan(ents, "delta", spec.max_shard_bytes))
    if "adapter" in emits:
        copy_adapter_files(fsrc, tmp)
    mask_files = (["mask.safetensors"] if "mask" in emits else []) + ([MASK_FILE] if "adapter" in emits else [])
    for fn in mask_files:
        ents = [(n, torch.uint8, ((by_name[n].numel + 7) // 8,)) for n in order]
        meta = {"smfa.mask": "bitpacked-little", "smfa.shapes": json.dumps({n: list(by_name[n].shape) for n in order})}
        if fn == MASK_FILE:
            meta["smfa.masked_adapter"] = json.dumps(dict(report.options, forget=report.sources["forget"]["path"]))
        plan.mask_ws.append(ShardedWriter(tmp, [(fn, ents)], metadata=meta))
    return plan


class _Run:
    """One run's state: the inputs, the backend and placement, the outputs, the report."""

    def __init__(self, fsrc: DeltaSource, asrc: DeltaSource | None, base: Checkpoint | None, items: list[_Item],
                 spec: RunSpec, be, report: Report, pl: Placement) -> None:
        self.fsrc, self.asrc, self.base, self.items = fsrc, asrc, base, items
        self.by_name = {it.name: it for it in items}
        self.spec, self.be, self.report, self.pl = spec, be, report, pl
        self.need_norms = asrc is not None
        total_bytes = sum(it.numel * 2 for it in items) * (2 if self.need_norms else 1)
        self.bar = progress_bar(total_bytes, spec.progress, report.command)
        self.bufs = _Buffers(spec.step)
        self.wb: WriteBehind  # started by stream(), which always closes it
        self.out: OutputPlan | None = None

    def sumsq(self, src: DeltaSource, it: _Item, label: str) -> float:
        return tensor_sumsq(src, it, self.be, self.spec.step, label, self.bar, self.pl)

    def global_norms(self) -> None:
        """rho_scope global: every tensor's norms first, one rho for the run."""
        for it in self.items:
            it.ss_f = self.sumsq(self.fsrc, it, "forget")
            if it.has_anchor:
                it.ss_a = self.sumsq(self.asrc, it, "anchor")
        self.report.extra["rho_global"] = rho_of(sum(i.ss_f for i in self.items),
                                                 sum(i.ss_a for i in self.items if i.has_anchor), self.spec.eps)

    def rule(self, it: _Item) -> tuple[float | None, float, int]:
        """(rho, t, mode) of one tensor; its norms pass runs here under rho_scope tensor."""
        if not (self.need_norms and it.has_anchor):
            return None, 0.0, MODES["none"]
        if self.spec.rho_scope == "tensor":
            it.ss_f = self.sumsq(self.fsrc, it, "forget")
            it.ss_a = self.sumsq(self.asrc, it, "anchor")
            rho = rho_of(it.ss_f, it.ss_a, self.spec.eps)
        else:
            rho = self.report.extra["rho_global"]
        return rho, threshold(it.k, rho), self.spec.imode

    def inputs_of(self, name: str) -> list[tuple[str, int, int]]:
        """The file byte ranges one tensor's pass reads (for read-ahead)."""
        ranges = list(self.fsrc.byte_ranges(name))
        if self.asrc is not None and self.by_name[name].has_anchor:
            ranges += self.asrc.byte_ranges(name)
        if self.base is not None and "merged" in self.spec.emits:
            ranges.append(self.base.byte_range(name))
        return list(dict.fromkeys(ranges))  # the base once, however many sources read it

    def sculpt_item(self, it: _Item, write_merged: Callable | None) -> None:
        """The fused pass over one tensor's chunks; each chunk's writes wait until its slot syncs."""
        rho, t, mode_i = self.rule(it)
        pending: deque = deque()
        counts: list[torch.Tensor] = []
        pl = self.pl

        def finish() -> None:
            slot, writes, c, checks = pending.popleft()
            pl.sync(slot)
            check_finite(it.name, checks)
            for write, host in writes:
                self.wb.write(write, it.name, host)
                self.report.bytes_written += host.numel() * host.element_size()
            counts.append(c)

        for i, (s, e) in enumerate(chunk_ranges(it.numel, self.spec.step)):
            slot = i % pl.depth
            if len(pending) == pl.depth:
                finish()
            pending.append(self._chunk(it, s, e, slot, t, mode_i, write_merged))
            self.bar.update((e - s) * 2)
        while pending:
            finish()
        total = torch.stack(counts).sum(0).tolist() if counts else [0, 0, 0]
        anchor = "present" if it.has_anchor else ("missing (kept)" if self.asrc is not None else "none")
        self.report.tensors.append(tensor_row(
            it.name, it.shape, it.numel, ss_f=it.ss_f if self.need_norms else None,
            ss_a=it.ss_a if self.need_norms and it.has_anchor else None, rho=rho, k=it.k, t=t,
            conflict=total[0], masked=total[1], anchor=anchor))

    def _read(self, src: DeltaSource, it: _Item, s: int, e: int, slot: int, roles: tuple[str, str]):
        x, xb = src.read(it.name, s, e)
        self.bar.bytes_read += sum(v.numel() * v.element_size() for v in (x, xb) if v is not None)
        return self.pl.put(slot, roles[0], x), self.pl.put(slot, roles[1], xb)

    def _chunk(self, it: _Item, s: int, e: int, slot: int, t: float, mode_i: int, write_merged: Callable | None):
        """Read, sculpt and stage the writes of elements [s, e) of one tensor in `slot`."""
        n, pl, be, out = e - s, self.pl, self.be, self.out
        assert out is not None

        def outbuf(role: str, dtype: torch.dtype, count: int = n) -> torch.Tensor:
            return pl.out(slot, role, dtype, count) if pl.staged else self.bufs.get(role, dtype, count)

        f, fb = self._read(self.fsrc, it, s, e, slot, ("f", "fb"))
        # without an anchor, a = f: unused by mode none; the same shape keeps the kernel simple
        a, ab = self._read(self.asrc, it, s, e, slot, ("a", "ab")) if it.has_anchor else (f, fb)
        mask = outbuf("mask", torch.uint8, (n + 7) // 8) if out.mask_ws else None
        writes, checks = [], []  # checks: (output, counts of the call that wrote it), before it is written
        c = None
        if out.delta_w is not None:
            o = outbuf("delta", self.spec.out_dtype or self.fsrc.dtype(it.name))
            c = be.sculpt_chunk(f, fb, a, ab, t, mode_i, None, o, mask)
            checks.append(("delta output", c))
            writes.append((out.delta_w.write, pl.fetch(slot, "delta", o)))
        if write_merged is not None:
            assert self.base is not None
            w_dtype = self.base.info(it.name).torch_dtype
            w = self.base.read_into(it.name, None, s, e)  # the chunk the deltas' pairs just read
            self.bar.bytes_read += w.numel() * w.element_size()
            o = outbuf("merged", w_dtype)
            c = be.sculpt_chunk(f, fb, a, ab, t, mode_i, pl.put(slot, "w", w), o, mask if c is None else None)
            checks.append((f"merged output ({w_dtype})", c))
            writes.append((write_merged, pl.fetch(slot, "merged", o)))
        if c is None:  # mask only: the forget values a masked adapter keeps must be finite too
            o = outbuf("delta", torch.float32)
            c = be.sculpt_chunk(f, fb, a, ab, t, mode_i, None, o, mask)
            checks.append(("forget delta (written unmasked)", c))
        if mask is not None:
            host_mask = pl.fetch(slot, "mask", mask)
            writes += [(w_.write, host_mask) for w_ in out.mask_ws]
        pl.record(slot)
        return slot, writes, c, [] if self.spec.allow_nonfinite else checks


    def stream(self, tmp: str) -> None:
        """Every tensor in order (untouched base tensors as byte copies), then the indexes."""
        out, base = self.out, self.base
        assert out is not None
        self.wb = wb = WriteBehind(self.spec.step * 4)
        ahead = Prefetcher()
        for name in out.order:  # everything, in order; it stays a bounded distance ahead
            ahead.ahead(self.inputs_of(name))
        try:
            if out.merged_order is None:
                for name in out.order:
                    self.sculpt_item(self.by_name[name], None)
                    ahead.used(sum(e - s for _, s, e in self.inputs_of(name)))
            else:
                for fn, names in out.merged_order:
                    self._merged_file(tmp, fn, names, ahead)
                assert base is not None
                if base.index_path is not None:  # same shard layout and index as the base
                    weight_map = {n: base.file_of(n) for n in base.names()}
                    total = sum(base.info(n).nbytes for n in base.names())
                    wb.call(functools.partial(write_index, metadata=dict(base.index_metadata),
                                              filename=os.path.basename(base.index_path)), tmp, weight_map, total)
            if out.delta_w is not None:
                wb.call(out.delta_w.close, "delta.safetensors.index.json")
            for w_ in out.mask_ws:
                wb.call(w_.close, None)
            wb.drain()
        finally:
            ahead.close()
            wb.close()

    def _merged_file(self, tmp: str, fn: str, names: list[str], ahead: Prefetcher) -> None:
        """One shard of the merged checkpoint: sculpted tensors merged, the others copied byte for byte."""
        assert self.out is not None and self.base is not None
        ents, meta = self.out.merged_ents[fn]
        w = SafetensorsWriter(os.path.join(tmp, fn), ents, metadata=meta)
        reader = self.base.reader(fn)
        for name in names:
            if name in self.by_name:
                self.sculpt_item(self.by_name[name], w.write)
                ahead.used(sum(e - s for _, s, e in self.inputs_of(name)))
                continue
            info = self.base.info(name)  # untouched: byte copy, read straight into a write buffer
            for bs, be_ in chunk_ranges(info.nbytes, self.spec.step * 4):
                buf = self.wb.acquire()
                self.wb.submit(w.write, name, reader.read_bytes_into(name, buf, bs, be_), buf)
                self.report.bytes_written += be_ - bs
                self.bar.bytes_read += be_ - bs
        self.wb.call(w.close)


def run(fsrc: DeltaSource, asrc: DeltaSource | None, base: Checkpoint | None, items: list[_Item], tmp: str,
        spec: RunSpec, be: ModuleType, report: Report, pl: Placement) -> None:
    """Sculpt every item into the outputs `spec.emits` inside `tmp`, filling `report`."""
    r = _Run(fsrc, asrc, base, items, spec, be, report, pl)
    if r.need_norms and spec.rho_scope == "global":
        r.global_norms()
    r.out = plan_outputs(fsrc, base, items, tmp, spec, report)
    r.stream(tmp)
    report.bytes_read = r.bar.bytes_read
    r.bar.close()
