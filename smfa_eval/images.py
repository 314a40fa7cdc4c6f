"""Procedural portraits and fundus-like clinical images.

Everything is drawn with PIL's non-antialiased primitives at fixed fractions of the image
size, so each visual attribute can be read back from known pixels (the tests do exactly
that). PROBES names those pixels; change the drawing and the probes together.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import asdict, dataclass

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

BACKGROUNDS: dict[str, RGB] = {
    "light blue": (173, 216, 230), "mint green": (189, 252, 201), "beige": (245, 240, 220),
    "lavender": (220, 208, 255), "pale yellow": (255, 250, 180), "light gray": (211, 211, 211),
    "peach": (255, 218, 185), "sky blue": (135, 206, 250),
}
SHIRTS: dict[str, RGB] = {
    "red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 150, 60), "yellow": (235, 200, 20),
    "purple": (120, 40, 160), "orange": (240, 130, 20), "black": (20, 20, 20), "white": (250, 250, 250),
    "pink": (240, 110, 170), "teal": (0, 128, 128), "gray": (128, 128, 128), "navy": (0, 0, 110),
}
HAIR: dict[str, RGB] = {
    "black": (25, 20, 20), "brown": (100, 60, 30), "blonde": (230, 200, 120), "red": (170, 60, 20),
    "gray": (150, 150, 150), "white": (240, 240, 235),
}
HATS: dict[str, RGB] = {"red": (190, 20, 40), "blue": (20, 40, 150), "green": (20, 110, 40), "black": (10, 10, 10)}
SKIN: tuple[RGB, ...] = ((255, 224, 196), (241, 194, 155), (224, 172, 120), (198, 134, 66), (141, 85, 36), (92, 58, 30))
EYE: RGB = (40, 30, 30)
MOUTH: RGB = (150, 30, 40)
GLASSES: RGB = (15, 15, 15)
EARRING: RGB = (212, 160, 30)

RETINA: RGB = (200, 80, 40)
DISC: RGB = (250, 220, 150)
VESSEL: RGB = (140, 30, 20)
LESION_COLOURS: dict[str, RGB] = {
    "yellow": (245, 230, 70), "white": (252, 252, 252), "dark red": (90, 0, 20), "black": (25, 25, 25),
}
LESION_NOUNS = {"yellow": "exudates", "white": "cotton-wool lesions", "dark red": "haemorrhages", "black": "pigment clumps"}
LESION_PATTERNS: tuple[str, ...] = ("scattered spots", "a large patch", "a ring", "streaks")
LESION_LOCATIONS: tuple[str, ...] = ("superior", "inferior", "macular")
EYES: tuple[str, ...] = ("left", "right")

# Probe points and regions as fractions of the image size (x, y).
PROBES = {
    "background": (0.04, 0.04),
    "shirt": (0.5, 0.93),
    "hair": (0.265, 0.40),
    "hat": (0.5, 0.12),
    "glasses": (0.5, 0.43),
    "earring": (0.295, 0.55),
    "mouth_line": (0.5, 0.59),
    "disc_left": (0.28, 0.5),
    "disc_right": (0.72, 0.5),
    "lesion_centres": {"superior": (0.5, 0.27), "inferior": (0.5, 0.73), "macular": (0.5, 0.5)},
    "lesion_radius": 0.09,
}


@dataclass(frozen=True)
class PortraitAttrs:
    background: str
    shirt: str
    hair: str
    skin: int
    glasses: bool
    earrings: bool
    hat: str | None  # hat colour, None = no hat
    smiling: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClinicalAttrs:
    eye: str
    pattern: str
    colour: str
    location: str
    vessel_seed: int

    def description(self) -> str:
        """The clinical description; every word of it is visible in the image."""
        return (f"fundus photograph of the {self.eye} eye showing {self.pattern} of "
                f"{self.colour} {LESION_NOUNS[self.colour]} in the {self.location} retina")

    def to_dict(self) -> dict:
        return asdict(self)


def sample_portrait(rng: random.Random) -> PortraitAttrs:
    """Random portrait attributes (background, shirt, hair, skin, accessories, smile) drawn from `rng`."""
    return PortraitAttrs(
        background=rng.choice(sorted(BACKGROUNDS)), shirt=rng.choice(sorted(SHIRTS)),
        hair=rng.choice(sorted(HAIR)), skin=rng.randrange(len(SKIN)),
        glasses=rng.random() < 0.4, earrings=rng.random() < 0.4,
        hat=rng.choice(sorted(HATS)) if rng.random() < 0.3 else None, smiling=rng.random() < 0.5,
    )


def sample_clinical(rng: random.Random) -> ClinicalAttrs:
    """Random fundus-image attributes (eye, lesion pattern, colour, location, vessel seed) from `rng`."""
    return ClinicalAttrs(
        eye=rng.choice(EYES), pattern=rng.choice(LESION_PATTERNS), colour=rng.choice(sorted(LESION_COLOURS)),
        location=rng.choice(LESION_LOCATIONS), vessel_seed=rng.randrange(2**31),
    )


def _p(size: int, fx: float, fy: float) -> tuple[int, int]:
    return int(fx * size), int(fy * size)


def _box(size: int, x0: float, y0: float, x1: float, y1: float) -> list[int]:
    return [int(x0 * size), int(y0 * size), int(x1 * size), int(y1 * size)]


def draw_portrait(a: PortraitAttrs, size: int = 128) -> Image.Image:
    """Render a size x size cartoon portrait with the attributes `a`."""
    s = size
    w = max(2, s // 40)
    img = Image.new("RGB", (s, s), BACKGROUNDS[a.background])
    d = ImageDraw.Draw(img)
    skin = SKIN[a.skin]
    d.ellipse(_box(s, 0.12, 0.74, 0.88, 1.30), fill=SHIRTS[a.shirt])
    d.rectangle(_box(s, 0.43, 0.62, 0.57, 0.78), fill=skin)
    d.ellipse(_box(s, 0.24, 0.14, 0.76, 0.60), fill=HAIR[a.hair])
    d.ellipse(_box(s, 0.30, 0.22, 0.70, 0.70), fill=skin)
    for fx in (0.42, 0.58):
        cx, cy = _p(s, fx, 0.43)
        r = max(1, int(0.025 * s))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=EYE)
    d.line([_p(s, 0.5, 0.47), _p(s, 0.5, 0.53)], fill=tuple(max(0, c - 40) for c in skin), width=max(1, w // 2))
    if a.smiling:
        d.arc(_box(s, 0.41, 0.52, 0.59, 0.63), start=20, end=160, fill=MOUTH, width=w)
    else:
        d.line([_p(s, 0.42, 0.59), _p(s, 0.58, 0.59)], fill=MOUTH, width=w)
    if a.glasses:
        d.rectangle(_box(s, 0.35, 0.385, 0.485, 0.475), outline=GLASSES, width=w)
        d.rectangle(_box(s, 0.515, 0.385, 0.65, 0.475), outline=GLASSES, width=w)
        d.line([_p(s, 0.48, 0.43), _p(s, 0.52, 0.43)], fill=GLASSES, width=w)
    if a.earrings:
        r = max(2, int(0.03 * s))
        for fx in (0.295, 0.705):
            cx, cy = _p(s, fx, 0.55)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=EARRING)
    if a.hat is not None:
        d.rectangle(_box(s, 0.22, 0.20, 0.78, 0.26), fill=HATS[a.hat])
        d.rectangle(_box(s, 0.32, 0.06, 0.68, 0.22), fill=HATS[a.hat])
    return img


def draw_clinical(a: ClinicalAttrs, size: int = 128) -> Image.Image:
    """Render a size x size synthetic retina: vessels from the optic disc, then the lesions of `a`."""
    s = size
    img = Image.new("RGB", (s, s), (0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse(_box(s, 0.04, 0.04, 0.96, 0.96), fill=RETINA)
    dx, dy = PROBES["disc_left" if a.eye == "left" else "disc_right"]
    cx, cy = _p(s, dx, dy)
    rng = random.Random(a.vessel_seed)
    # Vessels fan out from the disc; drawn before the lesions so they never hide one.
    for k in range(6):
        ang = (k / 6) * 2 * math.pi + rng.uniform(-0.3, 0.3)
        length = s * rng.uniform(0.25, 0.4)
        mid = (cx + math.cos(ang + 0.2) * length / 2, cy + math.sin(ang + 0.2) * length / 2)
        end = (cx + math.cos(ang) * length, cy + math.sin(ang) * length)
        d.line([(cx, cy), mid, end], fill=VESSEL, width=max(1, s // 64))
    r = int(0.08 * s)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=DISC)
    _draw_lesions(d, a, s, rng)
    return img


def _draw_lesions(d: ImageDraw.ImageDraw, a: ClinicalAttrs, s: int, rng: random.Random) -> None:
    col = LESION_COLOURS[a.colour]
    cx, cy = _p(s, *PROBES["lesion_centres"][a.location])
    r = int(PROBES["lesion_radius"] * s)
    w = max(2, s // 40)
    if a.pattern == "a large patch":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    elif a.pattern == "a ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=col, width=w)
    elif a.pattern == "streaks":
        for off in (-0.05, 0.0, 0.05):
            y = cy + int(off * s)
            d.line([(cx - r, y), (cx + r, y)], fill=col, width=w)
    else:  # scattered spots: kept off the centre so they never look like a patch
        dot = max(1, int(0.02 * s))
        for k in range(7):
            ang = k * 2 * math.pi / 7 + rng.uniform(-0.3, 0.3)
            rad = rng.uniform(0.35, 0.6) * r
            x, y = cx + math.cos(ang) * rad, cy + math.sin(ang) * rad
            d.ellipse([x - dot, y - dot, x + dot, y + dot], fill=col)


def png_bytes(img: Image.Image) -> bytes:
    """PNG without metadata and with fixed settings, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()
