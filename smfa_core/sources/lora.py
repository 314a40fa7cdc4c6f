"""PEFT LoRA adapters as delta sources: the adapter's keys sorted into target modules and
tensors saved in full, paired with the base, and expanded tile by tile (lora_tiling)."""

from __future__ import annotations

import os
import re

import torch

from ..errors import SmfaError
from ..names import match_names
from ..safetensors_io import Checkpoint, SafetensorsReader
from . import lora_config
from .base import ADAPTER_CONFIG, ADAPTER_WEIGHTS, DeltaSource, _map_onto, _read_pair_upcast, _Scratch
from .lora_config import _RE_EMBED, _RE_FULL_WRAPPED, _RE_LINEAR, _strip_prefix
from .lora_tiling import LoraModule, LoraTiles, shape_of_module


class LoraSource(DeltaSource):
    """A PEFT LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``).

    Per target module the delta of ``<module>.weight`` is ΔW = s·B@A with s = lora_alpha/r, or
    lora_alpha/√r with rsLoRA, r and alpha taken from ``rank_pattern``/``alpha_pattern`` with peft's
    matching rule. ``fan_in_fan_out`` (GPT-2 Conv1D) and embedding LoRA give ΔW = (s·B@A).T. Whether a
    layer is transposed follows ``fan_in_fan_out`` in the config, except that a non-square base weight
    whose shape only fits the other layout decides (peft itself flips the flag per layer type). Conv
    LoRA (lora_B with 1×… kernels, no groups) gives ΔW = s·B@A over the flattened kernel.

    The factors are kept in memory in fp32. ``read`` computes only the row tiles the range touches:
    tiles of about ``LORA_TILE_ELEMS`` elements on a fixed grid, each one GEMM with s as its alpha, so a
    value's bits do not depend on the range asked for (they may differ from peft's merge by rounding).

    Tensors saved in full (``modules_to_save``, biases with ``bias="all"|"lora_only"``) give
    saved − base and need ``base``. The copy of an embedding's base layer that peft saves with
    embedding LoRA (``…embed_tokens.base_layer.weight``) is frozen, so it is not part of the delta; with
    ``base`` its shape is checked (a resized vocabulary is an error).
    """

    kind = "lora"

    def __init__(self, path: str, *, base: Checkpoint | None = None, target_names=None, label: str = "forget",
                 weights_file: str = ADAPTER_WEIGHTS):
        path = os.fspath(path)
        if os.path.isfile(path) and os.path.basename(path) in (ADAPTER_CONFIG, weights_file):
            path = os.path.dirname(path) or "."
        self.path = path
        self.label = label
        self._base = base
        self._scratch = _Scratch()
        self._lora_tiles = LoraTiles()  # where tiles are expanded (see compute_on)
        self._reader: SafetensorsReader | None = None
        self.config = lora_config.load_config(self.path, label)
        lora_config.check_config(self.config, os.path.join(self.path, ADAPTER_CONFIG))
        self.weights_path = lora_config.find_weights(self.path, label, weights_file)
        self._reader = SafetensorsReader(self.weights_path)
        try:
            self._setup(target_names)
        except BaseException:
            self.close()
            raise

    def _err(self, msg: str) -> SmfaError:
        return SmfaError(f"{self.label} LoRA adapter {self.path}: {msg}")

    # -- tensors -----------------------------------------------------------------------------
    def _scan(self) -> tuple[dict[str, LoraModule], dict[str, str], dict[str, str]]:
        """The adapter's keys sorted: LoRA target modules, tensors saved in full (canonical weight
        name -> key) and frozen base-layer copies (module -> key); unsupported variants refused."""
        reader = self._reader
        assert reader is not None
        wpath = self.weights_path
        modules: dict[str, LoraModule] = {}
        full: dict[str, str] = {}
        base_layer_copies: dict[str, str] = {}
        adapters: set[str] = set()
        for key in reader.tensors:
            rest = _strip_prefix(key)
            m = _RE_LINEAR.match(rest) or _RE_EMBED.match(rest)
            if m:
                if m.group("adapter"):
                    adapters.add(m.group("adapter"))
                self._add_factor(modules, m, key, "embedding" if "lora_embedding_" in rest else "linear")
                continue
            if "lora_magnitude_vector" in rest:
                raise SmfaError(f"{wpath}: tensor {key!r} is a DoRA magnitude vector; DoRA is not supported")
            if re.search(r"\.lora_B(\.[^.]+)?\.bias$", rest):
                raise SmfaError(f"{wpath}: tensor {key!r} is a lora_bias; lora_bias is not supported")
            if re.search(r"(^|\.)lora_", rest) or "trainable_tokens" in rest:
                raise SmfaError(f"{wpath}: tensor {key!r} is an unsupported LoRA variant tensor")
            if rest.endswith(".base_layer.weight"):  # frozen copy (embedding LoRA), unless not a target
                base_layer_copies[rest[: -len(".base_layer.weight")]] = key
                continue
            rest = rest.replace(".base_layer.", ".")  # e.g. a trained bias of a LoRA target (bias="all")
            self._add_full(full, _RE_FULL_WRAPPED.sub(".", rest), key)
        if len(adapters) > 1:
            raise SmfaError(f"{wpath}: holds several adapters ({', '.join(sorted(adapters))}); save one")
        return modules, full, base_layer_copies

    def _add_factor(self, modules: dict[str, LoraModule], m: re.Match, key: str, kind: str) -> None:
        wpath = self.weights_path
        mod = modules.get(m.group("mod"))
        if mod is None:
            mod = modules[m.group("mod")] = LoraModule(m.group("mod"), kind, "", "")
        elif mod.kind != kind:
            raise SmfaError(f"{wpath}: tensor {key!r}: module {m.group('mod')!r} mixes LoRA kinds")
        if m.group("ab") == "A":
            if mod.a_key:
                raise SmfaError(f"{wpath}: tensor {key!r}: second lora_A for module {mod.module!r}")
            mod.a_key = key
        else:
            if mod.b_key:
                raise SmfaError(f"{wpath}: tensor {key!r}: second lora_B for module {mod.module!r}")
            mod.b_key = key

    def _add_full(self, full: dict[str, str], name: str, key: str) -> None:
        if name in full:
            raise SmfaError(f"{self.weights_path}: tensors {full[name]!r} and {key!r} both hold {name!r}")
        full[name] = key

    def _setup(self, target_names) -> None:
        wpath = self.weights_path
        modules, full, base_layer_copies = self._scan()
        for mod in modules.values():
            self._load_module(mod)
        # Frozen base copies of modules that are not LoRA targets are ordinary full tensors.
        for mod_name, key in list(base_layer_copies.items()):
            if mod_name not in modules:
                self._add_full(full, _RE_FULL_WRAPPED.sub(".", _strip_prefix(key).replace(".base_layer.", ".", 1)),
                               key)
                del base_layer_copies[mod_name]
        lora_names = {mod.module + ".weight": mod for mod in modules.values()}
        clash = sorted(set(lora_names) & set(full))
        if clash:
            raise SmfaError(f"{wpath}: tensor {clash[0]!r} is both a LoRA target and saved in full")
        if full and self._base is None:
            first = sorted(full)[0]
            raise self._err(
                f"tensor {full[first]!r} in {wpath} is saved in full (modules_to_save or a trained bias); "
                "its delta is the saved tensor minus the base, so --base is required"
            )
        own = list(lora_names) + list(full)
        self._base_of: dict[str, str] = {}
        if self._base is not None:
            self._pair_with_base(own, lora_names, full, {m: (k, modules[m]) for m, k in base_layer_copies.items()})
        mapping = _map_onto(own, target_names, self.label, self.path, "the target tensors")
        self._modules = {mapping[n]: mod for n, mod in lora_names.items()}
        self._full = {mapping[n]: (key, n) for n, key in full.items()}
        self._names = [mapping[n] for n in own]

    def _pair_with_base(self, own: list[str], lora_names: dict[str, LoraModule], full: dict[str, str],
                        copies: dict[str, tuple[str, LoraModule]]) -> None:
        """Shape checks against the base, fan_in_fan_out per layer, base names of full tensors."""
        reader, base, wpath = self._reader, self._base, self.weights_path
        assert reader is not None and base is not None
        self._base_of = match_names(
            own, base.names(), source_label=f"{self.label} LoRA adapter ({wpath})", target_label=f"base ({base.path})"
        )
        for name, mod in lora_names.items():
            bshape = tuple(base.info(self._base_of[name]).shape)
            self._fit_base_shape(mod, bshape, base.info(self._base_of[name]).path)
        for name, key in full.items():
            ai, bi = reader.tensors[key], base.info(self._base_of[name])
            if tuple(ai.shape) != tuple(bi.shape):
                raise SmfaError(
                    f"{wpath}: tensor {key!r} has shape {list(ai.shape)} but base tensor {bi.name!r} in "
                    f"{bi.path} has shape {list(bi.shape)}"
                )
        for mod_name, (key, mod) in copies.items():
            name = mod_name + ".weight"
            want = tuple(reader.tensors[key].shape)
            got = shape_of_module(mod)
            if want != got:
                raise SmfaError(
                    f"{wpath}: tensor {key!r} (the base layer the adapter was trained on) has shape "
                    f"{list(want)} but the base model's {self._base_of.get(name, name)!r} has {list(got)} "
                    "(resized vocabulary?)"
                )

    def _load_module(self, mod: LoraModule) -> None:
        reader = self._reader
        assert reader is not None
        wpath = self.weights_path
        if not mod.a_key or not mod.b_key:
            have, miss = ("lora_A", "lora_B") if mod.a_key else ("lora_B", "lora_A")
            if mod.kind == "embedding":
                have, miss = "lora_embedding_" + have[-1], "lora_embedding_" + miss[-1]
            raise SmfaError(f"{wpath}: module {mod.module!r} has {have} ({mod.a_key or mod.b_key!r}) but no {miss}")
        a = reader.read(mod.a_key).to(torch.float32)
        b = reader.read(mod.b_key).to(torch.float32)
        sa, sb = list(a.shape), list(b.shape)
        r, mod.scaling = lora_config.scaling(self.config, mod.module)
        bad = None
        if mod.kind == "embedding":
            # lora_embedding_A (r, num_embeddings), lora_embedding_B (dim, r); ΔW = s·(B@A).T
            if a.dim() != 2 or b.dim() != 2 or b.shape[1] != a.shape[0]:
                bad = "expected lora_embedding_A (r, num_embeddings) and lora_embedding_B (dim, r)"
            mod.transposed = True
        elif a.dim() == 2:
            if b.dim() != 2 or b.shape[1] != a.shape[0]:
                bad = "expected lora_A (r, in_features) and lora_B (out_features, r)"
            mod.transposed = bool(self.config.get("fan_in_fan_out"))
        else:
            mod.kind = "conv"
            if b.dim() != a.dim() or b.shape[1] != a.shape[0] or any(d != 1 for d in b.shape[2:]):
                bad = "expected conv lora_A (r, in, *kernel) and lora_B (out, r, 1, …)"
        if bad:
            raise SmfaError(
                f"{wpath}: module {mod.module!r}: {mod.a_key!r} has shape {sa} and {mod.b_key!r} has shape {sb}; {bad}"
            )
        if a.shape[0] != r:
            raise SmfaError(
                f"{wpath}: module {mod.module!r}: {mod.a_key!r} has rank {a.shape[0]} but the adapter config says "
                f"r={r} for it (r / rank_pattern)"
            )
        mod.r = r
        mod.a = a.reshape(a.shape[0], -1).contiguous()  # (r, cols) ; embedding (r, num_embeddings)
        mod.b = b.reshape(b.shape[0], b.shape[1]).contiguous()  # (rows, r) ; embedding (dim, r)
        if mod.kind == "conv":
            mod.shape = (b.shape[0], *a.shape[1:])
        else:
            mod.shape = shape_of_module(mod)


    def _fit_base_shape(self, mod: LoraModule, bshape: tuple[int, ...], bpath: str) -> None:
        if mod.kind == "linear" and bshape != mod.shape and bshape == mod.shape[::-1]:
            # peft flips fan_in_fan_out per layer type (Conv1D vs Linear); the base shape tells.
            mod.transposed = not mod.transposed
            mod.shape = shape_of_module(mod)
        if bshape != mod.shape:
            raise SmfaError(
                f"{self.weights_path}: module {mod.module!r}: LoRA delta has shape {list(mod.shape)} "
                f"({mod.a_key!r} {list(mod.a.shape)}, {mod.b_key!r} {list(mod.b.shape)}) but the base weight in "
                f"{bpath} has shape {list(bshape)}"
            )


    def compute_on(self, device: torch.device | str) -> None:
        """Expand B@A on `device` (the GPU of `--device cuda`): the factors go there once (they are
        small) and every tile is one GEMM there, so the dense delta never crosses PCIe. `read` then
        returns tensors on that device for LoRA modules (tensors saved in full stay on the host).
        The bits are that device's GEMM's, which may round differently from the CPU's."""
        device = torch.device(device)
        for mod in self._modules.values():
            if mod.a is not None:
                mod.a, mod.b = mod.a.to(device), mod.b.to(device)
        self._lora_tiles.clear()
        self._lora_tiles = LoraTiles(device)

    # -- DeltaSource ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._names)

    def shape(self, name: str) -> tuple[int, ...]:
        mod = self._modules.get(name)
        if mod is not None:
            return tuple(mod.shape)
        full = self._full.get(name)
        if full is None:
            raise self._unknown(name)
        assert self._reader is not None
        return tuple(self._reader.tensors[full[0]].shape)

    def dtype(self, name: str) -> torch.dtype:
        if name in self._modules:
            return torch.float32
        full = self._full.get(name)
        if full is None:
            raise self._unknown(name)
        assert self._reader is not None and self._base is not None
        dt = self._reader.tensors[full[0]].torch_dtype
        return dt if dt == self._base.info(self._base_of[full[1]]).torch_dtype else torch.float32

    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        mod = self._modules.get(name)
        if mod is None:
            return self._read_full(name, start, stop)
        self._check_range(name, start, stop)
        return self._lora_tiles.read(name, mod, start, stop), None

    def _read_full(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        full = self._full.get(name)
        if full is None:
            raise self._unknown(name)
        self._check_range(name, start, stop)
        key, own = full
        assert self._reader is not None and self._base is not None
        ai = self._reader.tensors[key]
        bname = self._base_of[own]
        bi = self._base.info(bname)
        x = self._reader.read_into(key, self._scratch.bytes("x", (stop - start) * ai.itemsize), start, stop)
        xb = self._base.read_into(bname, self._scratch.bytes("xb", (stop - start) * bi.itemsize), start, stop)
        if ai.dtype != bi.dtype:
            return _read_pair_upcast(self._scratch, x, xb)
        return x, xb

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._scratch.clear()
        self._lora_tiles.clear()
