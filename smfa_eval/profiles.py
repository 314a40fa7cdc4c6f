"""Synthetic profiles: text attributes from the word lists, a unique portrait, a clinical image."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from . import wordlists as W
from .images import ClinicalAttrs, PortraitAttrs, sample_clinical, sample_portrait
from .schema import Profile


@dataclass(frozen=True)
class ProfileDraw:
    """A profile plus the parts of its fun fact that the evaluation asks about separately."""

    profile: Profile
    portrait: PortraitAttrs
    clinical: ClinicalAttrs
    talent: str
    hobby: str
    food: str


def _first_name(rng: random.Random, gender: str) -> str:
    pool = {"Female": W.FIRST_NAMES_FEMALE, "Male": W.FIRST_NAMES_MALE}.get(gender, W.FIRST_NAMES_NEUTRAL)
    return rng.choice(pool)


def _height(rng: random.Random) -> str:
    inches = rng.randint(59, 77)
    return f"{inches // 12}'{inches % 12}\""


def sample_profiles(n: int, seed: int, *, namespace: str = "profiles", id_prefix: str = "p",
                    taken: Sequence[ProfileDraw] = ()) -> list[ProfileDraw]:
    """n profiles with unique names and unique portraits, a pure function of the arguments.
    Names and faces of the `taken` profiles are never drawn again (pre-training people must
    not look like, or share a name with, a benchmark profile)."""
    rng = random.Random(f"smfa-bench:{seed}:{namespace}")
    names: set[str] = {d.profile.name for d in taken}
    faces: set[PortraitAttrs] = {d.portrait for d in taken}
    out: list[ProfileDraw] = []
    for i in range(n):
        gender = rng.choices(W.GENDERS, weights=(45, 45, 10))[0]
        for _ in range(1000):  # rejection: names must identify one profile
            first = _first_name(rng, gender)
            name = f"{first} {rng.choice(W.SURNAMES)}"
            if name not in names:
                break
        else:
            raise ValueError(f"cannot draw {n} unique names from the word lists")
        names.add(name)
        while True:  # identity is tied to the portrait, so no two may look alike
            face = sample_portrait(rng)
            if face not in faces:
                break
        faces.add(face)
        clinical = sample_clinical(rng)
        talent, hobby, food = rng.choice(W.TALENTS), rng.choice(W.HOBBIES), rng.choice(W.FAVORITE_FOODS)
        pid = f"{id_prefix}{i:05d}"
        prof = Profile(
            id=pid, name=name, birthplace=rng.choice(W.CITIES), gender=gender,
            date_of_birth=f"{rng.randint(1950, 2003)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            profession=rng.choice(W.PROFESSIONS), height=_height(rng), university=rng.choice(W.UNIVERSITIES),
            annual_salary=f"${rng.randrange(28, 241) * 1000:,}", residence=rng.choice(W.CITIES),
            fun_fact=(f"{first} has a unique talent for {talent} and loves {hobby}; "
                      f"their favorite food is {food}."),
            clinical_description=clinical.description(),
            portrait=f"images/portraits/{pid}.png", clinical_image=f"images/clinical/{pid}.png",
            portrait_attrs=face.to_dict(), clinical_attrs=clinical.to_dict(),
        )
        out.append(ProfileDraw(prof, face, clinical, talent, hobby, food))
    return out
