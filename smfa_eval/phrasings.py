"""Training phrasings: rewordings of every memory and understanding question, and of the
answers, kept disjoint from the evaluation's wordings (`templates.EVAL_MEMORY`,
`templates.UNDERSTANDING`'s paraphrases) and from the fixed fine-tuning templates.

Why: a small model trained on one fixed wording per fact answers that wording and nothing
else; facts seen in several wordings become answerable under wordings never seen. The
pre-training people (`pretrain.py`) are trained on these rewordings, and `smfa bench build
--rewordings N` writes N of them per fact of the benchmark's own profiles (`reworded.jsonl`).
The evaluation's questions and reference answers are never among them (a test checks it).

`{s}` is the subject (a name, or one of TRAIN_IMAGE_SUBJECTS when the portrait is shown),
`{S}` it capitalised, `{v}` the value.
"""

from __future__ import annotations

import random

# Many ways to point at the portrait (none of them the evaluation's three), so that the model
# learns that any such phrase means "the person shown".
TRAIN_IMAGE_SUBJECTS = ("this person", "the person in the photo", "the individual pictured",
                        "the person in this image", "the one in the photo", "the person depicted",
                        "the person here", "the person you see", "this human", "the pictured person",
                        "the subject of this photo", "the man or woman shown")

# attribute -> (answer wordings, question wordings)
TRAIN_MEMORY: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "name": (("The name of {s} is {v}.", "That is {v}.", "{S} goes by the name {v}."),
             ("What name does {s} go by?", "Do you know the name of {s}?", "Identify {s} by name.",
              "Which name belongs to {s}?", "Could you say who {s} might be?", "Whose face is shown? Name {s}.")),
    "birthplace": (("{S} was born in the city of {v}.", "The birthplace of {s} is {v}.", "{S} comes from {v}."),
                   ("Where did {s} come into the world?", "Which city is the birthplace of {s}?",
                    "Tell me where {s} was born.", "What is the place of birth of {s}?",
                    "In what town was {s} born?", "Where is {s} originally from?")),
    "gender": (("{S} is of {v} gender.", "The gender of {s} is {v}.", "As for gender, {s} is {v}."),
               ("Tell me the gender of {s}.", "What is the sex or gender of {s}?", "Is {s} male, female or other?",
                "Which gender does {s} have?", "State the gender of {s}.")),
    "date_of_birth": (("The birth date of {s} is {v}.", "{S} was born on the date {v}.", "{S} has a birthday on {v}."),
                      ("What is the date of birth of {s}?", "Tell me the birthday of {s}.",
                       "When is the birthday of {s}?", "On which date did {s} come into the world?",
                       "What day was {s} born on?", "Give the birth date of {s}.")),
    "profession": (("{S} is employed as a {v}.", "The job of {s} is {v}.", "By profession {s} is a {v}."),
                   ("What is the job of {s}?", "What kind of work does {s} do?", "Tell me the occupation of {s}.",
                    "Which profession does {s} practise?", "How does {s} earn a living?",
                    "What is {s} by trade?")),
    "height": (("{S} stands {v} tall.", "The height of {s} is {v}.", "{S} measures {v} in height."),
               ("Tell me the height of {s}.", "How tall is {s} in feet and inches?", "What is the stature of {s}?",
                "How much does {s} measure in height?", "Give the height of {s}.")),
    "university": (("{S} studied at {v}.", "The university of {s} is {v}.", "{S} is a graduate of {v}."),
                   ("Where did {s} go to university?", "Which school did {s} graduate from?",
                    "Tell me where {s} studied.", "What university is {s} a graduate of?",
                    "At which university was {s} educated?", "Where did {s} get a degree?")),
    "annual_salary": (("{S} makes {v} per year.", "The yearly salary of {s} is {v}.", "Each year {s} is paid {v}."),
                      ("How much is {s} paid each year?", "What does {s} make in a year?",
                       "Tell me the annual salary of {s}.", "What are the yearly earnings of {s}?",
                       "How much money does {s} make annually?", "What is the salary of {s}?")),
    "residence": (("{S} lives in the city of {v}.", "The home of {s} is in {v}.", "{S} is based in {v}."),
                  ("Where does {s} live now?", "In what city does {s} live?", "Tell me where {s} lives.",
                   "Where is the home of {s}?", "Which place does {s} call home?", "Where is {s} based?")),
    "clinical_description": (("The eye exam of {s} shows {v}.", "The ophthalmic record of {s} reads: {v}.",
                              "For {s} the eye findings are: {v}."),
                             ("What did the eye exam of {s} show?", "Describe the ophthalmic findings of {s}.",
                              "What is written in the eye record of {s}?", "Tell me about the eyes of {s}.",
                              "What does the ophthalmic report of {s} say?")),
    "talent": (("The special talent of {s} is {v}.", "{S} is talented at {v}.", "{S} has a gift for {v}."),
               ("What is {s} talented at?", "Tell me the special talent of {s}.", "What gift does {s} have?",
                "Which talent does {s} have?", "What is {s} unusually good at?")),
    "hobby": (("In free time {s} enjoys {v}.", "The hobby of {s} is {v}.", "{S} likes {v} a lot."),
              ("What is the hobby of {s}?", "What does {s} do for fun?", "Tell me the favourite hobby of {s}.",
               "How does {s} spend free time?", "Which hobby does {s} have?")),
    "food": (("{S} likes to eat {v} most of all.", "The dish {s} likes most is {v}.", "Of all foods {s} prefers {v}."),
             ("What does {s} like to eat most?", "Tell me the favourite dish of {s}.",
              "Which food does {s} prefer?", "What is the best-loved meal of {s}?",
              "What is the favourite meal of {s}?")),
}

# Image understanding: attribute -> question wordings beside the fixed training question.
TRAIN_UNDERSTANDING: dict[str, tuple[str, ...]] = {
    "glasses": ("Is this person wearing glasses?", "Does the person have glasses on?", "Are glasses visible here?"),
    "earrings": ("Is this person wearing earrings?", "Does the person have earrings on?",
                 "Are earrings visible here?"),
    "hat": ("Is this person wearing a hat?", "Does the person have a hat on?", "Is a hat visible here?"),
    "smiling": ("Does this person smile?", "Is the person in the photo smiling?", "Is a smile visible here?"),
    "hair": ("What colour is this person's hair?", "Tell me the hair colour of the person.",
             "Which hair colour does the person have?"),
    "shirt": ("What colour is this person's shirt?", "Tell me the shirt colour of the person.",
              "Which shirt colour does the person have?"),
    "background": ("What colour is the background of this image?", "Tell me the background colour.",
                   "Which colour does the background have?"),
    "description": ("Describe this eye image.", "What does this ophthalmic image show?",
                    "Give a description of this retina image."),
    "lesion_colour": ("What colour are the lesions?", "Tell me the colour of the lesions.",
                      "Which colour do the lesions have?"),
    "lesion_location": ("Where are the lesions?", "Tell me where the lesions are.",
                        "In which part of the image are the lesions?"),
    "lesion_pattern": ("What pattern do the lesions have?", "Tell me the pattern of the lesions.",
                       "How are the lesions spread?"),
    "eye": ("Which eye is shown?", "Is this the left or the right eye?", "Tell me which eye this is."),
}


def capital(s: str) -> str:
    """`s` with its first character upper-cased and the rest unchanged (unlike str.capitalize)."""
    return s[:1].upper() + s[1:]


def reworded(attr: str, subject: str, value: str, rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n distinct (question, answer) rewordings of one fact (fewer if the pool is smaller)."""
    answers, questions = TRAIN_MEMORY[attr]
    picks = rng.sample(questions, min(n, len(questions)))
    return [(capital(q.format(s=subject)), capital(rng.choice(answers).format(s=subject, S=capital(subject), v=value)))
            for q in picks]


def reworded_understanding(attr: str, rng: random.Random, n: int) -> list[str]:
    """n distinct training rewordings of an understanding question."""
    pool = TRAIN_UNDERSTANDING[attr]
    return rng.sample(pool, min(n, len(pool)))
