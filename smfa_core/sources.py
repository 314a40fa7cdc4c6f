"""Delta sources: where ΔW comes from, read in bounded chunks (DESIGN §3).

A source yields, per tensor and element range, the pair ``(x, x_base)`` whose fp32 difference is
the delta (see ``backends.reference.delta_f32``):

- ``delta``: dense delta safetensors (a file, or a directory of shards): ``x`` = stored values.
- ``checkpoint``: a fine-tuned checkpoint minus ``base``: ``x`` = fine-tuned chunk, ``x_base`` = base
  chunk. When the two dtypes differ both are upcast to fp32 (exact), and ``dtype()`` says fp32.
- ``lora``: a PEFT LoRA adapter: ``x`` = s·B@A materialised in fp32 for the rows the range touches
  only. Tensors saved in full in the adapter (``modules_to_save``, trained biases) give
  ``x`` = saved chunk, ``x_base`` = base chunk.

``read()`` returns views into buffers owned by the source and reused by the next ``read()``; it
never materialises a whole tensor unless the range covers it. Every problem is an ``SmfaError`` that
names the file and, where relevant, the tensor. ``close()`` never closes the ``base`` checkpoint it
was given (the caller owns it).
"""

from __future__ import annotations

import json
import math
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from .errors import SmfaError
from .names import match_names
from .safetensors_io import Checkpoint, SafetensorsReader

__all__ = [
    "KINDS",
    "CheckpointDeltaSource",
    "DeltaSource",
    "DenseDeltaSource",
    "LoraSource",
    "MASKED_WEIGHTS",
    "MASK_FILE",
    "MaskedAdapterSource",
    "detect_kind",
    "open_source",
]

KINDS = ("delta", "lora", "masked-adapter", "checkpoint")
# A masked adapter keeps the LoRA weights under another name than PEFT's, so that PEFT cannot
# load it as a plain (unmasked) adapter by mistake; the masks sit next to them.
MASK_FILE = "smfa_mask.safetensors"
MASKED_WEIGHTS = "smfa_adapter_model.safetensors"

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_WEIGHTS_BIN = "adapter_model.bin"


class DeltaSource(ABC):
    """One delta, tensor by tensor. ``names()`` are canonical (mapped onto ``target_names``)."""

    path: str
    kind: str

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]: ...

    @abstractmethod
    def dtype(self, name: str) -> torch.dtype:
        """dtype of the ``x`` that ``read`` returns (fp32 for LoRA products)."""

    @abstractmethod
    def read(self, name: str, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Flattened elements ``[start, stop)`` as ``(x, x_base)``; views valid until the next read."""

    @abstractmethod
    def close(self) -> None: ...

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        """The file byte ranges `read(name, ...)` reads, for read-ahead (none by default)."""
        return []

    def numel(self, name: str) -> int:
        return math.prod(self.shape(name))

    def __enter__(self) -> DeltaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {len(self.names())} tensors)"

    # -- helpers shared by the implementations ------------------------------------------------
    def _check_range(self, name: str, start: int, stop: int) -> None:
        n = self.numel(name)
        if not (0 <= start <= stop <= n):
            raise SmfaError(f"{self.path}: tensor {name!r}: element range [{start}, {stop}) is outside [0, {n})")

    def _unknown(self, name: str) -> SmfaError:
        return SmfaError(f"{self.path}: no tensor {name!r} in this {self.kind} source")


class _Scratch:
    """Reusable byte buffers, one per slot, grown on demand (never shrunk), on one device."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        self.device = torch.device(device)

    def bytes(self, slot: str, nbytes: int) -> torch.Tensor:
        buf = self._bufs.get(slot)
        if buf is None or buf.numel() < nbytes:
            buf = self._bufs[slot] = torch.empty(max(nbytes, 64), dtype=torch.uint8, device=self.device)
        return buf[: max(nbytes, 0)]

    def typed(self, slot: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        isz = torch.empty((), dtype=dtype).element_size()
        return self.bytes(slot, n * isz).view(dtype)

    def clear(self) -> None:
        self._bufs.clear()


def _map_onto(own: list[str], target_names, label: str, path: str, target_label: str) -> dict[str, str]:
    """own name -> canonical name (identity without target_names)."""
    if target_names is None:
        return {n: n for n in own}
    return match_names(
        own, list(target_names), source_label=f"{label} ({path})", target_label=target_label
    )


def _read_pair_upcast(scratch: _Scratch, x: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both chunks exactly upcast to fp32 (used when the two dtypes differ)."""
    n = x.numel()
    x32 = scratch.typed("x32", n, torch.float32)
    xb32 = scratch.typed("xb32", n, torch.float32)
    x32.copy_(x)
    xb32.copy_(xb)
    return x32, xb32


# --------------------------------------------------------------------------------------------
# dense deltas


class _FileSource(DeltaSource):
    """A source whose tensors are those of one checkpoint of its own (`self._ckpt`), seen
    under canonical names."""

    _ckpt: Checkpoint

    def _set_names(self, own: list[str], target_names, label: str) -> None:
        mapping = _map_onto(own, target_names, label, self.path, "the target tensors")
        self._orig = {mapping[n]: n for n in own}
        self._names = [mapping[n] for n in own]

    def names(self) -> list[str]:
        return list(self._names)

    def _own(self, name: str) -> str:
        try:
            return self._orig[name]
        except KeyError:
            raise self._unknown(name) from None

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._ckpt.info(self._own(name)).shape)


class DenseDeltaSource(_FileSource):
    """Dense delta safetensors: a file, or a directory of shards (index.json or *.safetensors)."""

    kind = "delta"

    def __init__(self, path: str, *, target_names=None, label: str = "forget", detected: bool = False):
        self.path = os.fspath(path)
        self.label = label
        self._ckpt = _open_delta_checkpoint(self.path, label)
        try:
            own = self._ckpt.names()
            if detected:  # the kind was guessed: LoRA factors mean a missing adapter config
                _refuse_lora_factors(self.path, own, label)
            self._set_names(own, target_names, label)
        except BaseException:
            self._ckpt.close()
            raise
        self._scratch = _Scratch()

    def dtype(self, name: str) -> torch.dtype:
        return self._ckpt.info(self._own(name)).torch_dtype

    def read(self, name, start, stop):
        own = self._own(name)
        self._check_range(name, start, stop)
        info = self._ckpt.info(own)
        buf = self._scratch.bytes("x", (stop - start) * info.itemsize)
        return self._ckpt.read_into(own, buf, start, stop), None

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        return [self._ckpt.byte_range(self._own(name))]

    def close(self) -> None:
        self._ckpt.close()
        self._scratch.clear()


def _refuse_lora_factors(path: str, names: list[str], label: str) -> None:
    """lora_A/lora_B factors are not a ΔW: detected as a dense delta (no adapter config next
    to them), they would be sculpted as garbage. An explicit kind "delta" still reads them."""
    factor = next((n for n in names if _RE_LINEAR.match(n) or _RE_EMBED.match(n)), None)
    if factor is not None:
        raise SmfaError(f"{label} delta {path}: tensor {factor!r} is a LoRA factor, but there is no "
                        f"{ADAPTER_CONFIG} next to it; put the adapter's {ADAPTER_CONFIG} in the directory "
                        "(a PEFT adapter dir), not just its weights, or pass the kind delta explicitly")


def _open_delta_checkpoint(path: str, label: str) -> Checkpoint:
    if not os.path.exists(path):
        raise SmfaError(f"{label} delta {path}: no such file or directory")
    try:
        return Checkpoint(path)
    except SmfaError as e:
        raise SmfaError(f"{label} delta: {e}") from None


# --------------------------------------------------------------------------------------------
# fine-tuned checkpoint minus base


class CheckpointDeltaSource(_FileSource):
    """A fine-tuned checkpoint minus ``base``: ``x`` = fine-tuned chunk, ``x_base`` = base chunk.

    Tensors are paired by name (identical, or through the known layout rewrites of ``names``); every
    tensor of the fine-tuned checkpoint must exist in the base with the same shape. Pairs of different
    dtypes are both upcast to fp32 (exact), and ``dtype()`` then reports fp32.
    """

    kind = "checkpoint"

    def __init__(self, path: str, *, base: Checkpoint | None, target_names=None, label: str = "forget"):
        self.path = os.fspath(path)
        self.label = label
        if base is None:
            raise SmfaError(
                f"--base is required for checkpoint deltas ({label} {self.path} is a fine-tuned checkpoint; "
                "its delta is it minus the base model)"
            )
        self._base = base
        self._ckpt = _open_delta_checkpoint(self.path, label)
        try:
            own = self._ckpt.names()
            self._base_of = match_names(
                own, base.names(), source_label=f"{label} checkpoint ({self.path})", target_label=f"base ({base.path})"
            )
            for n in own:
                fi, bi = self._ckpt.info(n), base.info(self._base_of[n])
                if tuple(fi.shape) != tuple(bi.shape):
                    raise SmfaError(
                        f"{label} checkpoint {fi.path}: tensor {n!r} has shape {list(fi.shape)} but base tensor "
                        f"{bi.name!r} in {bi.path} has shape {list(bi.shape)}"
                    )
            self._set_names(own, target_names, label)
        except BaseException:
            self._ckpt.close()
            raise
        self._scratch = _Scratch()

    def dtype(self, name):
        own = self._own(name)
        dt = self._ckpt.info(own).torch_dtype
        return dt if dt == self._base.info(self._base_of[own]).torch_dtype else torch.float32

    def read(self, name, start, stop):
        own = self._own(name)
        self._check_range(name, start, stop)
        fi = self._ckpt.info(own)
        bname = self._base_of[own]
        bi = self._base.info(bname)
        x = self._ckpt.read_into(own, self._scratch.bytes("x", (stop - start) * fi.itemsize), start, stop)
        xb = self._base.read_into(bname, self._scratch.bytes("xb", (stop - start) * bi.itemsize), start, stop)
        if fi.dtype != bi.dtype:
            return _read_pair_upcast(self._scratch, x, xb)
        return x, xb

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        own = self._own(name)
        return [self._ckpt.byte_range(own), self._base.byte_range(self._base_of[own])]

    def close(self) -> None:
        self._ckpt.close()
        self._scratch.clear()


# --------------------------------------------------------------------------------------------
# PEFT LoRA adapters

# Options of peft's LoraConfig that change what the adapter means beyond ΔW = s·B@A.
_UNSUPPORTED_FLAGS = {
    "use_dora": "DoRA (use_dora) rescales the merged weight by a magnitude vector; merge the adapter "
    "first (merge_and_unload) and use the result as a checkpoint delta",
    "lora_bias": "lora_bias adds a trained bias to lora_B",
    "use_qalora": "QA-LoRA (use_qalora) pools the input before lora_A",
}
_UNSUPPORTED_SET = {
    "layer_replication": "layer_replication changes the model's layer structure",
    "target_parameters": "LoRA on nn.Parameter targets (target_parameters) is not supported",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens) only applies after invocation tokens",
    "trainable_token_indices": "trainable tokens (trainable_token_indices) are not supported",
    "use_bdlora": "block-diagonal LoRA (use_bdlora) is not supported",
    "arrow_config": "Arrow routing (arrow_config) is not supported",
    "kasa_config": "KaSA (kasa_config) is not supported",
    "monteclora_config": "MonteCLoRA (monteclora_config) is not supported",
    "velora_config": "VeLoRA (velora_config) is not supported",
}
# init_lora_weights values that rewrite the base weights (the base becomes a residual), so that ΔW is not
# B@A relative to the original base. ("eva", "orthogonal", "gaussian", "mica" leave the base alone.)
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")

_RE_LINEAR = re.compile(r"^(?P<mod>.+)\.lora_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?\.weight$")
_RE_EMBED = re.compile(r"^(?P<mod>.+)\.lora_embedding_(?P<ab>[AB])(?:\.(?P<adapter>[^.]+))?$")
_RE_FULL_WRAPPED = re.compile(r"\.modules_to_save\.[^.]+\.")
_PEFT_PREFIX = "base_model.model."
#: LoRA products are computed in row tiles of about this many fp32 elements (16 MiB), on a fixed grid.
LORA_TILE_ELEMS = 1 << 22
_TILE_CACHE = 2


def _check_scale(cfg_path: str, key: str, v: object, *, integer: bool) -> None:
    """A rank (positive integer) or an alpha (positive finite number): anything else would
    scale every ΔW by NaN, Inf or a division by zero."""
    ok = isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v)
    if isinstance(v, bool) or not ok or v <= 0:  # type: ignore[operator]
        what = "a positive integer" if integer else "a positive finite number"
        raise SmfaError(f"{cfg_path}: {key} must be {what}, got {v!r}")


def _strip_prefix(key: str) -> str:
    return key[len(_PEFT_PREFIX) :] if key.startswith(_PEFT_PREFIX) else key


def get_pattern_key(pattern_keys, key_to_match: str) -> str:
    """peft 0.21's ``peft.utils.other.get_pattern_key``: first pattern that matches the key's tail."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


@dataclass
class _LoraModule:
    module: str  # module path, e.g. model.language_model.layers.0.mlp.down_proj
    kind: str  # "linear" | "embedding" | "conv"
    a_key: str
    b_key: str
    a: torch.Tensor | None = None  # fp32 (r, cols...) ; embedding: (r, num_embeddings)
    b: torch.Tensor | None = None  # fp32 (rows, r)     ; embedding: (dim, r)
    r: int = 0
    scaling: float = 1.0
    transposed: bool = False  # ΔW = (s·B@A).T  (fan_in_fan_out, embeddings)
    shape: tuple[int, ...] = ()


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
        self._weights_file = weights_file
        self._base = base
        self._scratch = _Scratch()
        self._dev_scratch = _Scratch()  # where tiles are expanded (see compute_on)
        self._tiles: list[tuple[tuple[str, int], torch.Tensor, torch.Tensor]] = []  # (key, tile, store)
        self._reader: SafetensorsReader | None = None
        self.config = self._load_config()
        self._check_config()
        self.weights_path = self._find_weights()
        self._reader = SafetensorsReader(self.weights_path)
        try:
            self._setup(target_names)
        except BaseException:
            self.close()
            raise

    # -- config ------------------------------------------------------------------------------
    def _err(self, msg: str) -> SmfaError:
        return SmfaError(f"{self.label} LoRA adapter {self.path}: {msg}")

    def _load_config(self) -> dict:
        cfg_path = os.path.join(self.path, ADAPTER_CONFIG)
        if not os.path.isdir(self.path):
            raise SmfaError(f"{self.label} LoRA adapter {self.path}: not a directory (expected a PEFT adapter dir)")
        if not os.path.isfile(cfg_path):
            raise SmfaError(f"{self.label} LoRA adapter {self.path}: no {ADAPTER_CONFIG} (not a PEFT adapter dir)")
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError) as e:
            raise SmfaError(f"{cfg_path}: cannot read adapter config: {e}") from None
        if not isinstance(cfg, dict):
            raise SmfaError(f"{cfg_path}: adapter config is not a JSON object")
        return cfg

    def _check_config(self) -> None:
        cfg = self.config
        cfg_path = os.path.join(self.path, ADAPTER_CONFIG)
        pt = cfg.get("peft_type")
        if str(pt).upper() != "LORA":
            raise SmfaError(f"{cfg_path}: peft_type is {pt!r}; only LORA adapters are supported")
        for key, why in _UNSUPPORTED_FLAGS.items():
            if cfg.get(key):
                raise SmfaError(f"{cfg_path}: unsupported option {key}={cfg[key]!r}: {why}")
        for key, why in _UNSUPPORTED_SET.items():
            if cfg.get(key):
                raise SmfaError(f"{cfg_path}: unsupported option {key}={cfg[key]!r}: {why}")
        init = cfg.get("init_lora_weights", True)
        if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
            raise SmfaError(
                f"{cfg_path}: unsupported option init_lora_weights={init!r}: this initialisation changes the base "
                "weights, so the adapter alone is not the delta; convert it with peft's "
                "path_initial_model_for_weight_conversion when saving"
            )
        _check_scale(cfg_path, "r", cfg.get("r"), integer=True)
        _check_scale(cfg_path, "lora_alpha", cfg.get("lora_alpha"), integer=False)
        for key in ("rank_pattern", "alpha_pattern"):
            v = cfg.get(key) or {}
            if not isinstance(v, dict):
                raise SmfaError(f"{cfg_path}: {key} must be an object, got {v!r}")
            for pat, value in v.items():
                try:
                    re.compile(rf"(.*\.)?({pat})$")
                except re.error as e:
                    raise SmfaError(f"{cfg_path}: {key} key {pat!r} is not a valid regular expression: {e}") from None
                _check_scale(cfg_path, f"{key}[{pat!r}]", value, integer=key == "rank_pattern")

    def _find_weights(self) -> str:
        st = os.path.join(self.path, self._weights_file)
        if os.path.isfile(st):
            return st
        if os.path.isfile(os.path.join(self.path, ADAPTER_WEIGHTS_BIN)):
            raise SmfaError(
                f"{self.label} LoRA adapter {self.path}: only {ADAPTER_WEIGHTS_BIN} (pickle) found; convert it to "
                f"safetensors first, e.g. `PeftModel.from_pretrained(...).save_pretrained(dir, "
                f"safe_serialization=True)` or `safetensors.torch.save_file(torch.load(bin), '{ADAPTER_WEIGHTS}')`"
            )
        raise SmfaError(f"{self.label} LoRA adapter {self.path}: no {self._weights_file} in this directory")

    def _scaling(self, module: str) -> tuple[int, float]:
        cfg = self.config
        rp = cfg.get("rank_pattern") or {}
        ap = cfg.get("alpha_pattern") or {}
        r = rp.get(get_pattern_key(rp.keys(), module), cfg["r"])
        alpha = ap.get(get_pattern_key(ap.keys(), module), cfg["lora_alpha"])
        if cfg.get("use_rslora"):
            return r, alpha / math.sqrt(r)
        return r, alpha / r

    # -- tensors -----------------------------------------------------------------------------
    def _setup(self, target_names) -> None:
        reader = self._reader
        assert reader is not None
        wpath = self.weights_path
        modules: dict[str, _LoraModule] = {}
        full: dict[str, str] = {}  # canonical weight name -> adapter key
        base_layer_copies: dict[str, str] = {}  # module -> adapter key of its frozen base copy
        adapters: set[str] = set()

        for key in reader.tensors:
            rest = _strip_prefix(key)
            m = _RE_LINEAR.match(rest) or _RE_EMBED.match(rest)
            if m:
                kind = "embedding" if "lora_embedding_" in rest else "linear"
                if m.group("adapter"):
                    adapters.add(m.group("adapter"))
                mod = modules.get(m.group("mod"))
                if mod is None:
                    mod = modules[m.group("mod")] = _LoraModule(m.group("mod"), kind, "", "")
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
            name = _RE_FULL_WRAPPED.sub(".", rest)
            if name in full:
                raise SmfaError(f"{wpath}: tensors {full[name]!r} and {key!r} both hold {name!r}")
            full[name] = key
        if len(adapters) > 1:
            raise SmfaError(f"{wpath}: holds several adapters ({', '.join(sorted(adapters))}); save one")

        for mod in modules.values():
            self._load_module(mod)

        # Frozen base copies of modules that are not LoRA targets are ordinary full tensors.
        for mod_name, key in list(base_layer_copies.items()):
            if mod_name not in modules:
                name = _RE_FULL_WRAPPED.sub(".", _strip_prefix(key).replace(".base_layer.", ".", 1))
                if name in full:
                    raise SmfaError(f"{wpath}: tensors {full[name]!r} and {key!r} both hold {name!r}")
                full[name] = key
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

        # Pair with the base: shape checks, fan_in_fan_out per layer, base names of full tensors.
        self._base_of: dict[str, str] = {}
        if self._base is not None:
            base = self._base
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
            for mod_name, key in base_layer_copies.items():
                name = mod_name + ".weight"
                want = tuple(reader.tensors[key].shape)
                got = self.shape_of_module(modules[mod_name])
                if want != got:
                    raise SmfaError(
                        f"{wpath}: tensor {key!r} (the base layer the adapter was trained on) has shape "
                        f"{list(want)} but the base model's {self._base_of.get(name, name)!r} has {list(got)} "
                        "(resized vocabulary?)"
                    )

        mapping = _map_onto(own, target_names, self.label, self.path, "the target tensors")
        self._modules = {mapping[n]: mod for n, mod in lora_names.items()}
        self._full = {mapping[n]: (key, n) for n, key in full.items()}
        self._names = [mapping[n] for n in own]

    def _load_module(self, mod: _LoraModule) -> None:
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
        r, mod.scaling = self._scaling(mod.module)
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
            mod.shape = self.shape_of_module(mod)

    @staticmethod
    def shape_of_module(mod: _LoraModule) -> tuple[int, ...]:
        assert mod.a is not None and mod.b is not None
        if mod.kind == "conv":
            return mod.shape
        out_f, in_f = mod.b.shape[0], mod.a.shape[1]
        return (in_f, out_f) if mod.transposed else (out_f, in_f)

    def _fit_base_shape(self, mod: _LoraModule, bshape: tuple[int, ...], bpath: str) -> None:
        if mod.kind == "linear" and bshape != mod.shape and bshape == mod.shape[::-1]:
            # peft flips fan_in_fan_out per layer type (Conv1D vs Linear); the base shape tells.
            mod.transposed = not mod.transposed
            mod.shape = self.shape_of_module(mod)
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
        self._dev_scratch = _Scratch(device)
        self._tiles.clear()

    # -- DeltaSource ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._names)

    def shape(self, name):
        mod = self._modules.get(name)
        if mod is not None:
            return tuple(mod.shape)
        full = self._full.get(name)
        if full is None:
            raise self._unknown(name)
        assert self._reader is not None
        return tuple(self._reader.tensors[full[0]].shape)

    def dtype(self, name):
        if name in self._modules:
            return torch.float32
        full = self._full.get(name)
        if full is None:
            raise self._unknown(name)
        assert self._reader is not None and self._base is not None
        dt = self._reader.tensors[full[0]].torch_dtype
        return dt if dt == self._base.info(self._base_of[full[1]]).torch_dtype else torch.float32

    def read(self, name, start, stop):
        mod = self._modules.get(name)
        if mod is None:
            return self._read_full(name, start, stop)
        self._check_range(name, start, stop)
        if start == stop:
            return self._dev_scratch.typed("delta", 0, torch.float32), None
        cols = math.prod(mod.shape[1:])
        tile_rows = max(1, LORA_TILE_ELEMS // cols)
        span = tile_rows * cols
        t_first, t_end = start // span, -(-stop // span)
        if t_end - t_first == 1:  # inside one tile: a view of it
            t0 = t_first * span
            return self._tile(name, mod, t_first, tile_rows, cols)[start - t0 : stop - t0], None
        out = self._dev_scratch.typed("delta", stop - start, torch.float32)
        for t in range(t_first, t_end):
            tile = self._tile(name, mod, t, tile_rows, cols)
            t0 = t * span
            lo, hi = max(start, t0), min(stop, t0 + tile.numel())
            out[lo - start : hi - start].copy_(tile[lo - t0 : hi - t0])
        return out, None

    def _tile(self, name: str, mod: _LoraModule, t: int, tile_rows: int, cols: int) -> torch.Tensor:
        """Rows [t·tile_rows, (t+1)·tile_rows) of s·B@A (or its transpose), flattened, in fp32.

        Tiles sit on a fixed grid and are always computed by the same matmul into a buffer of their
        own, so a value's bits do not depend on which range was asked for; the last few tiles are
        kept, since consecutive chunks share a border tile.
        """
        key = (name, t)
        for i, (k, flat, _store) in enumerate(self._tiles):
            if k == key:
                self._tiles.append(self._tiles.pop(i))
                return flat
        rows = mod.shape[0]
        a, b = t * tile_rows, min(rows, (t + 1) * tile_rows)
        store = None
        if len(self._tiles) >= _TILE_CACHE:
            _k, _flat, old = self._tiles.pop(0)
            if old.numel() >= (b - a) * cols:
                store = old
        if store is None:
            store = torch.empty(max(tile_rows * cols, 1), dtype=torch.float32, device=self._dev_scratch.device)
        tile = store[: (b - a) * cols].view(b - a, cols)
        assert mod.a is not None and mod.b is not None
        # One GEMM with the scaling as its alpha (beta=0: the buffer's old contents are ignored).
        if mod.transposed:
            # rows a..b of (B@A).T = A[:, a:b].T @ B.T
            tile.addmm_(mod.a[:, a:b].t(), mod.b.t(), beta=0, alpha=mod.scaling)
        else:
            tile.addmm_(mod.b[a:b], mod.a, beta=0, alpha=mod.scaling)
        flat = tile.view(-1)
        self._tiles.append((key, flat, store))
        return flat

    def _read_full(self, name, start, stop):
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
        self._dev_scratch.clear()
        self._tiles.clear()


# --------------------------------------------------------------------------------------------
# masked adapters (`smfa sculpt --emit adapter`)


# Bit j of a mask byte b (little bit order: element 8i + j of the tensor) as a bool table.
_BYTE_BITS = ((torch.arange(256, dtype=torch.int32).unsqueeze(1) >> torch.arange(8, dtype=torch.int32)) & 1).bool()
_ZERO = torch.zeros((), dtype=torch.float32)


class MaskedAdapterSource(DeltaSource):
    """A masked adapter: a PEFT LoRA adapter's config and weights (the weights renamed
    ``smfa_adapter_model.safetensors``, so PEFT refuses the directory instead of loading the
    unmasked adapter) plus ``smfa_mask.safetensors``, the bit-packed sculpting mask of each of
    its tensors (written by ``smfa sculpt --emit adapter``).

    The delta is the LoRA delta (as ``LoraSource`` computes it, fp32) with the masked entries set
    to +0.0; tensors the adapter saves in full give (saved − base) masked the same way. Merging it
    (``smfa merge``) therefore gives the bits of ``smfa sculpt --emit merged`` on the same inputs.
    Its size is the adapter's plus one bit per delta element.
    """

    kind = "masked-adapter"

    def __init__(self, path: str, *, base: Checkpoint | None = None, target_names=None, label: str = "forget"):
        path = os.fspath(path)
        if os.path.isfile(path):
            path = os.path.dirname(path) or "."
        self.path = path
        self.label = label
        mpath = os.path.join(path, MASK_FILE)
        if not os.path.isfile(mpath):
            raise SmfaError(f"{label} masked adapter {path}: no {MASK_FILE}")
        self._scratch = _Scratch()
        self._mask: SafetensorsReader | None = None
        self._lora = LoraSource(path, base=base, target_names=target_names, label=label, weights_file=MASKED_WEIGHTS)
        try:
            self._mask = SafetensorsReader(mpath)
            self._mask_of = match_names(self._lora.names(), list(self._mask.tensors),
                                        source_label=f"{label} adapter ({path})", target_label=f"mask ({mpath})")
            for name, mname in self._mask_of.items():
                info = self._mask.tensors[mname]
                want = (self._lora.numel(name) + 7) // 8
                if info.torch_dtype != torch.uint8 or tuple(info.shape) != (want,):
                    raise SmfaError(f"{mpath}: mask {mname!r} is {info.dtype} {list(info.shape)}, expected U8 "
                                    f"[{want}] (one bit per element of {name!r})")
        except BaseException:
            self.close()
            raise

    def names(self) -> list[str]:
        return self._lora.names()

    def shape(self, name: str) -> tuple[int, ...]:
        return self._lora.shape(name)

    def dtype(self, name: str) -> torch.dtype:
        return torch.float32

    def byte_ranges(self, name: str) -> list[tuple[str, int, int]]:
        assert self._mask is not None
        info = self._mask.tensors[self._mask_of[name]]
        return [*self._lora.byte_ranges(name), (info.path, info.start, info.end)]

    def read(self, name, start, stop):
        if name not in self._mask_of:
            raise self._unknown(name)
        self._check_range(name, start, stop)
        x, xb = self._lora.read(name, start, stop)
        n = stop - start
        out = self._scratch.typed("masked", n, torch.float32)
        if xb is not None:  # the pair's delta, as the kernels form it: one fp32 subtraction
            torch.sub(x.to(torch.float32), xb.to(torch.float32), out=out)
            x = out
        if n == 0:
            return out, None
        assert self._mask is not None
        b0, b1 = start // 8, (stop + 7) // 8
        packed = self._mask.read_into(self._mask_of[name], self._scratch.bytes("mask", b1 - b0), b0, b1)
        masked = _BYTE_BITS.index_select(0, packed.int()).view(-1)[start - 8 * b0 : start - 8 * b0 + n]
        torch.where(masked, _ZERO, x.to(torch.float32), out=out)  # +0.0, as the kernels write a masked entry
        return out, None

    def close(self) -> None:
        if getattr(self, "_lora", None) is not None:
            self._lora.close()
        if self._mask is not None:
            self._mask.close()
        self._scratch.clear()


# --------------------------------------------------------------------------------------------
# detection and opening


def detect_kind(path) -> str:
    """``masked-adapter`` (adapter dir with smfa_mask.safetensors), ``lora`` (dir with
    adapter_config.json), ``checkpoint`` (dir with config.json), else ``delta``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SmfaError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        entries = set(os.listdir(path))
        if ADAPTER_CONFIG in entries:
            return "masked-adapter" if MASK_FILE in entries else "lora"
        if "config.json" in entries:
            return "checkpoint"
        if any(e.endswith(".index.json") or e.endswith(".safetensors") for e in entries):
            return "delta"
        raise SmfaError(
            f"{path}: cannot tell what this is: no {ADAPTER_CONFIG} (LoRA adapter), no config.json (fine-tuned "
            "checkpoint) and no *.safetensors / *.index.json (dense delta)"
        )
    # A file: the weights of an adapter dir count as that adapter; anything else is a dense delta.
    parent = os.path.dirname(path) or "."
    if os.path.basename(path) in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, MASKED_WEIGHTS, MASK_FILE) and os.path.isfile(
        os.path.join(parent, ADAPTER_CONFIG)
    ):
        return "masked-adapter" if os.path.isfile(os.path.join(parent, MASK_FILE)) else "lora"
    return "delta"


def open_source(
    path,
    *,
    kind: str = "auto",
    base: Checkpoint | None = None,
    target_names: list[str] | None = None,
    label: str = "forget",
) -> DeltaSource:
    """Open a delta source; its names are mapped onto ``target_names`` when given."""
    path = os.fspath(path)
    if kind == "auto":
        try:
            kind = detect_kind(path)
        except SmfaError as e:
            raise SmfaError(f"{label}: {e}") from None
        if kind == "delta":
            return DenseDeltaSource(path, target_names=target_names, label=label, detected=True)
    if kind == "delta":
        return DenseDeltaSource(path, target_names=target_names, label=label)
    if kind == "lora":
        return LoraSource(path, base=base, target_names=target_names, label=label)
    if kind == "masked-adapter":
        return MaskedAdapterSource(path, base=base, target_names=target_names, label=label)
    if kind == "checkpoint":
        if not os.path.exists(path):
            raise SmfaError(f"{label} checkpoint {path}: no such file or directory")
        return CheckpointDeltaSource(path, base=base, target_names=target_names, label=label)
    raise SmfaError(f"{label}: unknown delta kind {kind!r} (expected auto, {', '.join(KINDS)})")
