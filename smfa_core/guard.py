"""The output guard: no path the tool writes may equal, contain or lie inside one it reads.

Every command calls :func:`guard_outputs` with its inputs and outputs before it reads or
writes anything, whatever ``--overwrite`` says: replacing the only copy of a base model or an
adapter that took hours to train is never what a user meant. Paths are compared after
resolving symlinks and ``..`` (``os.path.realpath``), so ``B/``, ``B/./x/..`` and a symlink
to ``B`` are all ``B``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import SmfaError

__all__ = ["guard_outputs"]

PathLike = str | os.PathLike

# The files that make an adapter directory: given one of them as an input, the whole
# directory is read (its config at least), so the whole directory is protected.
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "adapter_model.smfa.safetensors",
                  "smfa_mask.safetensors")


def _protected(path: str) -> list[str]:
    """The resolved paths an input stands for: itself, the adapter dir a file of it belongs
    to, and the targets of the symlinks directly inside it (a hub cache's snapshot files)."""
    real = os.path.realpath(path)
    out = [real]
    parent = os.path.dirname(real)
    if os.path.basename(real) in _ADAPTER_FILES and os.path.isfile(os.path.join(parent, "adapter_config.json")):
        out.append(parent)
    if os.path.isdir(real):
        try:
            with os.scandir(real) as it:
                out += [os.path.realpath(e.path) for e in it if e.is_symlink()]
        except OSError:
            pass
    return out


def _inside(child: str, parent: str) -> bool:
    """child == parent or child lies under parent (both resolved)."""
    try:
        return os.path.commonpath([child, parent]) == parent
    except ValueError:  # different drives
        return False


def _relation(out: str, inp: str) -> str | None:
    if out == inp:
        return "is"
    if _inside(out, inp):
        return "lies inside"
    if _inside(inp, out):
        return "contains"
    return None


def guard_outputs(inputs: Mapping[str, PathLike | None], outputs: Mapping[str, PathLike | None], *,
                  files: tuple[str, ...] = (), run_dirs: tuple[str, ...] = ()) -> None:
    """Refuse an output (label -> path, e.g. ``{"--out": out}``) that is, contains or lies
    inside any input (label -> path), or that is another output; the outputs whose labels
    are in ``files`` must not be existing directories. An output in ``run_dirs`` is a
    directory written into, never replaced (a training run's OUT): it may contain an input
    (e.g. the data a pipeline wrote there); the caller lists what it writes inside it as
    outputs of their own. ``None`` entries are skipped."""
    ins = [(label, os.fspath(p)) for label, p in inputs.items() if p is not None]
    outs = [(label, os.fspath(p)) for label, p in outputs.items() if p is not None]
    protected = [(label, p, real) for label, p in ins for real in _protected(p)]
    seen: dict[str, str] = {}
    for label, p in outs:
        real = os.path.realpath(p)
        for in_label, in_p, in_real in protected:
            rel = _relation(real, in_real)
            if rel == "contains" and label in run_dirs:
                continue
            if rel is not None:
                raise SmfaError(f"{label} {p} {rel} the input {in_label} {in_p}; an output never replaces "
                                "or mixes into an input, even with --overwrite: choose another path")
        if real in seen:
            raise SmfaError(f"{label} {p} is also {seen[real]}; give each output its own path")
        seen[real] = f"{label} {p}"
        if label in files and os.path.isdir(real):
            raise SmfaError(f"{label} {p} is a directory; give a file path")
