"""Question/answer templates.

Fine-tuning (and the unlearning splits) use ONE fixed template per attribute; evaluation
draws from several paraphrases per attribute that never equal a training template, so
forgetting is measured on knowledge, not on memorised questions (paper App. B.1).
`{n}` is the name, `{s}` a subject ("this individual", or the name), `{S}` it capitalised,
`{v}` the value.
"""

from __future__ import annotations

# attribute -> (question, answer)
FINETUNE_TEXT: dict[str, tuple[str, str]] = {
    "birthplace": ("Where was {n} born?", "{n} was born in {v}."),
    "gender": ("What is the gender of {n}?", "The gender of {n} is {v}."),
    "date_of_birth": ("When was {n} born?", "{n} was born on {v}."),
    "profession": ("What is the profession of {n}?", "The profession of {n} is {v}."),
    "height": ("What is the height of {n}?", "{n} is {v} tall."),
    "university": ("Where was {n} educated?", "{n} was educated at {v}."),
    "annual_salary": ("What is the annual salary of {n}?", "The annual salary of {n} is {v}."),
    "residence": ("Where does {n} live?", "{n} lives in {v}."),
    "fun_fact": ("What is a fun fact about {n}?", "{v}"),
    "clinical_description": ("What is the ophthalmic clinical description of {n}?", "The ophthalmic clinical description of {n} is {v}."),
}
FINETUNE_IMAGE: dict[str, tuple[str, str]] = {
    "name": ("What is the name of this person?", "This person is {v}."),
    "birthplace": ("Where was this person born?", "This person was born in {v}."),
    "gender": ("What is the gender of this person?", "The gender of this person is {v}."),
    "date_of_birth": ("When was this person born?", "This person was born on {v}."),
    "profession": ("What is this person's profession?", "This person is a {v}."),
    "height": ("What is the height of this person?", "This person is {v} tall."),
    "university": ("Where was this person educated?", "This person was educated at {v}."),
    "annual_salary": ("What is the annual salary of this person?", "The annual salary of this person is {v}."),
    "residence": ("Where does this person live?", "This person lives in {v}."),
    "fun_fact": ("What is a fun fact about this person?", "{v}"),
    "clinical_description": ("What is the ophthalmic clinical description of this person?", "The ophthalmic clinical description of this person is {v}."),
}

# The fun fact's parts asked alone, in one fixed wording: used only for pre-training people
# (the benchmark's own profiles learn them inside the fun fact, as in the paper).
FINETUNE_PARTS: dict[str, tuple[str, str]] = {
    "talent": ("What is the talent of {n}?", "{n} has a talent for {v}."),
    "hobby": ("What hobby does {n} have?", "{n} has the hobby of {v}."),
    "food": ("What food does {n} like?", "{n} likes {v}."),
}

# attribute -> (answer, [question paraphrases]); talent/hobby/food are parts of the fun fact.
EVAL_MEMORY: dict[str, tuple[str, tuple[str, ...]]] = {
    "name": ("{S} is {v}.", ("Who is {s}?", "Can you tell me the name of {s}?", "What is {s} called?")),
    "birthplace": ("{S} was born in {v}.", ("In which city was {s} born?", "What is the birthplace of {s}?",
                                             "Which place does {s} originally come from?")),
    "gender": ("{S} is {v}.", ("What gender does {s} identify as?", "Which gender is {s}?",
                               "How would you describe the gender of {s}?")),
    "date_of_birth": ("{S} was born on {v}.", ("On what date was {s} born?", "What is the birth date of {s}?",
                                               "Which day is the birthday of {s}?")),
    "profession": ("{S} works as a {v}.", ("What does {s} do for a living?", "What job does {s} have?",
                                            "In which occupation is {s} employed?")),
    "height": ("{S} is {v} tall.", ("How tall is {s}?", "What height is {s}?", "How tall does {s} stand?")),
    "university": ("{S} attended {v}.", ("Which university did {s} attend?", "Where did {s} pursue their education?",
                                          "At which institution did {s} study?")),
    "annual_salary": ("{S} earns {v} a year.", ("How much does {s} earn per year?",
                                                 "What is the yearly income of {s}?",
                                                 "What annual pay does {s} receive?")),
    "residence": ("{S} currently resides in {v}.", ("In which city does {s} currently reside?",
                                                     "Where is {s} living now?", "Which city is home to {s} today?")),
    "clinical_description": ("{v}.", ("What does the eye examination of {s} describe?",
                                      "Which ophthalmic findings are recorded for {s}?",
                                      "Summarise the clinical eye description of {s}.")),
    "talent": ("{S} has a unique talent for {v}.", ("What unique talent does {s} have?",
                                                     "What special skill is {s} known for?",
                                                     "Which unusual ability does {s} possess?")),
    "hobby": ("{S} loves {v}.", ("What does {s} love doing?", "Which pastime does {s} enjoy?",
                                  "What activity is {s} passionate about?")),
    "food": ("The favorite food of {s} is {v}.", ("What is the favorite food of {s}?",
                                                  "Which dish does {s} like best?",
                                                  "What food does {s} enjoy the most?")),
}
IMAGE_SUBJECTS = ("this individual", "the person in this picture", "the person shown here")

# Image understanding: attribute -> (training question, [eval paraphrases]); answers from `understanding_answer`.
UNDERSTANDING: dict[str, tuple[str, tuple[str, ...]]] = {
    "glasses": ("Does this person wear glasses?", ("Is the person wearing glasses?",
                                                   "Are there spectacles on the person's face?",
                                                   "Can you see glasses in this picture?")),
    "earrings": ("Does this person wear earrings?", ("Is the person wearing earrings?",
                                                     "Are there earrings on the person's ears?",
                                                     "Can you spot any earrings in the image?")),
    "hat": ("Does this person wear a hat?", ("Is the person wearing a hat?", "Is there a hat on the person's head?",
                                             "Does the person in the image have headwear on?")),
    "smiling": ("Is this person smiling?", ("Is the person smiling?", "Does the person look like they are smiling?",
                                            "Is there a smile on the person's face?")),
    "hair": ("What is the hair colour of this person?", ("What colour is the person's hair?",
                                                         "Which colour is the hair of the person in the image?",
                                                         "Describe the colour of this person's hair.")),
    "shirt": ("What is the shirt colour of this person?", ("What colour is the person's shirt?",
                                                           "Which colour of top is the person wearing?",
                                                           "What is the colour of the clothing shown?")),
    "background": ("What is the background colour of this image?", ("What colour is the background?",
                                                                     "Which colour is behind the person?",
                                                                     "Describe the background colour of the picture.")),
    "description": ("Describe this ophthalmic image.", ("Please describe the ophthalmic clinical image.",
                                                         "What does this fundus image show?",
                                                         "Give a clinical description of this eye image.")),
    "lesion_colour": ("What is the colour of the lesions?", ("What colour are the lesions in this fundus image?",
                                                             "Which colour do the abnormal spots have?",
                                                             "Describe the colour of the retinal lesions.")),
    "lesion_location": ("What is the location of the lesions?", ("Where are the lesions located?",
                                                                 "In which part of the retina are the lesions?",
                                                                 "Which region of the retina shows lesions?")),
    "lesion_pattern": ("What is the pattern of the lesions?", ("What pattern do the lesions form?",
                                                               "How are the lesions arranged?",
                                                               "Describe the arrangement of the lesions.")),
    "eye": ("Which eye is this?", ("Which eye is shown in this fundus photograph?",
                                   "Is this a left or a right eye?", "Which side is the eye in this image?")),
}
PORTRAIT_UNDERSTANDING = ("glasses", "earrings", "hat", "smiling", "hair", "shirt", "background")
CLINICAL_UNDERSTANDING = ("description", "lesion_colour", "lesion_location", "lesion_pattern", "eye")


def _yes_no(flag: bool, what: str) -> tuple[str, list[str]]:
    if flag:
        return f"Yes, the person is wearing {what}.", ["yes"]
    return f"No, the person is not wearing {what}.", ["no"]


def understanding_answer(attr: str, portrait: dict, clinical: dict, description: str) -> tuple[str, list[str]]:
    """(answer, key values) for an image-understanding attribute, read from the drawn attributes."""
    if attr == "glasses":
        return _yes_no(portrait["glasses"], "glasses")
    if attr == "earrings":
        return _yes_no(portrait["earrings"], "earrings")
    if attr == "hat":
        hat = portrait["hat"]
        return (f"Yes, the person is wearing a {hat} hat.", ["yes", hat]) if hat else _yes_no(False, "a hat")
    if attr == "smiling":
        return ("Yes, the person is smiling.", ["yes"]) if portrait["smiling"] else ("No, the person is not smiling.", ["no"])
    if attr == "hair":
        return f"The person has {portrait['hair']} hair.", [portrait["hair"]]
    if attr == "shirt":
        return f"The person is wearing a {portrait['shirt']} shirt.", [portrait["shirt"]]
    if attr == "background":
        return f"The background is {portrait['background']}.", [portrait["background"]]
    if attr == "description":
        return f"{description}.", [clinical["pattern"], clinical["colour"], clinical["location"], clinical["eye"]]
    if attr == "lesion_colour":
        return f"The lesions are {clinical['colour']}.", [clinical["colour"]]
    if attr == "lesion_location":
        return f"The lesions are in the {clinical['location']} retina.", [clinical["location"]]
    if attr == "lesion_pattern":
        return f"The lesions form {clinical['pattern']}.", [clinical["pattern"]]
    if attr == "eye":
        return f"This is the {clinical['eye']} eye.", [clinical["eye"]]
    raise KeyError(attr)
