"""Matching tensor names between adapter keys, live `state_dict` names and on-disk checkpoints.

The same weight goes by several names:

- a PEFT adapter key: `base_model.model.<live module path>.lora_A.weight` (the source strips the
  LoRA part; this module strips `base_model.model.`);
- the live `state_dict` name in transformers >= 4.52 / 5.x, e.g. LLaVA(-OneVision)
  `model.language_model.layers.0.mlp.down_proj.weight`, `lm_head.weight`,
  `model.vision_tower.…`, `model.multi_modal_projector.…`, `model.image_newline`; Qwen2(.5)-VL
  `model.language_model.layers.…`, `model.visual.…`;
- the name on disk. transformers 5.24 `save_pretrained` writes the *legacy* layout (it reverses its
  checkpoint conversion mapping, `transformers/conversion_mapping.py`): LLaVA(-OneVision)
  `language_model.model.layers.…`, `language_model.lm_head.weight`, `vision_tower.…`,
  `multi_modal_projector.…`, `image_newline`; Qwen2(.5)-VL `model.layers.…`, `model.embed_tokens.…`,
  `model.norm.…`, `visual.…`. Checkpoints saved by transformers 4.x CLIP/SigLIP towers also carry
  `vision_tower.vision_model.…`, which 5.x loads as `model.vision_tower.…`.

`match_names` tries, per source name: the identical name; then the known rewrites (each form is
brought to one canonical form on both sides, which is the same as applying the rewrites in both
directions and keeping a result only if it is in the target set); then an unambiguous dotted-suffix
match of the whole module path. Two sources are never mapped onto one target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import SmfaError

__all__ = ["canonical_name", "match_names"]

# (pattern, replacement), applied in order, each at most once. They bring every known spelling to the
# live transformers 5.x spelling; applied to both sides, two names match iff they canonicalise alike.
_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        # PEFT wrappers: adapter keys and state_dicts of PeftModel.
        (r"^base_model\.model\.", ""),
        (r"\.base_layer\.", "."),
        (r"\.modules_to_save\.[^.]+\.", "."),
        # LLaVA / LLaVA-NeXT / LLaVA-OneVision legacy (on-disk) layout.
        (r"^language_model\.lm_head\.", "lm_head."),
        (r"^language_model\.model\.", "model.language_model."),
        (r"^vision_tower\.", "model.vision_tower."),
        (r"^multi_modal_projector\.", "model.multi_modal_projector."),
        (r"^image_newline$", "model.image_newline"),
        # CLIP / SigLIP towers saved by transformers 4.x carry an extra `vision_model.`.
        (r"^model\.vision_tower\.vision_model\.", "model.vision_tower."),
        # Qwen2-VL / Qwen2.5-VL legacy (on-disk) layout.
        (r"^visual\.", "model.visual."),
        (r"^model\.(layers|embed_tokens|norm|rotary_emb)\.", r"model.language_model.\1."),
    )
)


def canonical_name(name: str) -> str:
    """The live-5.x spelling of `name` under the known rewrites (identity for unknown layouts)."""
    for pattern, repl in _REWRITES:
        name = pattern.sub(repl, name, count=1)
    return name


def _is_dotted_suffix(short: str, long: str) -> bool:
    return long.endswith("." + short)


def _examples(names: Iterable[str], limit: int = 3) -> str:
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


class _Claims:
    """The source -> target map being built; refuses a target that two sources claim."""

    def __init__(self, source_label: str, target_label: str) -> None:
        self.source_label, self.target_label = source_label, target_label
        self.result: dict[str, str] = {}
        self.claimed: dict[str, str] = {}  # target -> source

    def claim(self, src: str, tgt: str, how: str) -> None:
        other = self.claimed.get(tgt)
        if other is not None:
            raise SmfaError(
                f"{self.source_label} tensors {other!r} and {src!r} both map onto {self.target_label} tensor "
                f"{tgt!r} (by {how}); cannot tell which one it is"
            )
        self.claimed[tgt] = src
        self.result[src] = tgt


def _by_rewrite(pending: list[str], targets: list[str], claims: _Claims) -> list[str]:
    """Known rewrites, through the canonical form; returns the sources still unmatched. A
    canonical form shared by several targets is ambiguous and never used."""
    by_canon: dict[str, list[str]] = {}
    for t in targets:
        by_canon.setdefault(canonical_name(t), []).append(t)
    still = []
    for s in pending:
        cands = by_canon.get(canonical_name(s), [])
        if len(cands) == 1:  # claim() refuses a target that another source already has
            claims.claim(s, cands[0], "name rewrite")
        else:
            still.append(s)
    return still


def _by_suffix(pending: list[str], targets: list[str], claims: _Claims) -> list[str]:
    """Unambiguous dotted suffix on the module path, raw names first, then canonical names;
    returns the sources still unmatched."""
    free = [t for t in targets if t not in claims.claimed]
    canon_free = {t: canonical_name(t) for t in free}
    unmatched = []
    for s in pending:
        cands = [t for t in free if _is_dotted_suffix(s, t) or _is_dotted_suffix(t, s)]
        if not cands:
            cs = canonical_name(s)
            cands = [t for t in free if _is_dotted_suffix(cs, canon_free[t]) or _is_dotted_suffix(canon_free[t], cs)]
        if not cands:  # taken already? then say so rather than "no counterpart"
            taken = [t for t in claims.claimed if _is_dotted_suffix(s, t) or _is_dotted_suffix(t, s)]
            if len(taken) == 1:
                claims.claim(s, taken[0], "module-path suffix")  # raises: two sources, one target
        if len(cands) == 1:
            claims.claim(s, cands[0], "module-path suffix")
            free.remove(cands[0])
        elif len(cands) > 1:
            raise SmfaError(
                f"{claims.source_label} tensor {s!r} matches several {claims.target_label} tensors by "
                f"module-path suffix: {_examples(cands)}; rename it so that it matches exactly one"
            )
        else:
            unmatched.append(s)
    return unmatched


def match_names(
    source_names: Iterable[str],
    target_names: Iterable[str],
    *,
    source_label: str = "source",
    target_label: str = "target",
    strict: bool = True,
) -> dict[str, str]:
    """Map every source name onto a distinct target name, or raise SmfaError.

    With strict=False, sources without a counterpart are left out of the result instead.

    Order of preference per source: identity, known rewrites (see module doc), unambiguous dotted
    suffix (one name is the other with a module-path prefix, on raw or canonical names).
    """
    sources = list(dict.fromkeys(source_names))
    targets = list(dict.fromkeys(target_names))
    target_set = set(targets)
    claims = _Claims(source_label, target_label)
    pending = []
    for s in sources:  # 1. identity
        if s in target_set:
            claims.claim(s, s, "identical name")
        else:
            pending.append(s)
    for step in (_by_rewrite, _by_suffix):  # 2. known rewrites, 3. module-path suffix
        if not pending:
            return claims.result
        pending = step(pending, targets, claims)
    if pending and strict:
        s = pending[0]
        more = f" (and {len(pending) - 1} more {source_label} tensors)" if len(pending) > 1 else ""
        near = [t for t in targets if t.rsplit(".", 1)[-1] == s.rsplit(".", 1)[-1]] or targets
        raise SmfaError(
            f"{source_label} tensor {s!r} has no counterpart in {target_label}{more}; "
            f"{target_label} has {len(targets)} tensors, e.g. {_examples(near)}"
        )
    return claims.result
