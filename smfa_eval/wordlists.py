"""Word lists the synthetic profiles are drawn from. All invented combinations; the
places and universities are real so that answers look plausible, the people are not."""

from __future__ import annotations

FIRST_NAMES_FEMALE: tuple[str, ...] = (
    "Rosa", "Amara", "Ingrid", "Mei", "Priya", "Leila", "Sofia", "Hana", "Zanele", "Elena",
    "Freya", "Aiko", "Nadia", "Camila", "Yasmin", "Olga", "Chiara", "Ayesha", "Lucia", "Thandi",
    "Maren", "Keiko", "Fatima", "Isabel", "Noor", "Anika", "Greta", "Lina", "Marisol", "Sunita",
    "Birgit", "Ama", "Esther", "Valentina", "Signe", "Rania", "Jia", "Tamar", "Ximena", "Wanjiru",
)
FIRST_NAMES_MALE: tuple[str, ...] = (
    "Tomas", "Kwame", "Hiroshi", "Arjun", "Mateo", "Lars", "Omar", "Dmitri", "Wei", "Rafael",
    "Jonas", "Kofi", "Andrei", "Emeka", "Sven", "Tariq", "Luca", "Ravi", "Diego", "Bogdan",
    "Kenji", "Youssef", "Anders", "Pablo", "Farid", "Nikolai", "Tendai", "Hamid", "Joaquin", "Min-jun",
    "Oskar", "Vikram", "Matteo", "Sipho", "Ilya", "Karim", "Haruto", "Felipe", "Dawit", "Callum",
)
FIRST_NAMES_NEUTRAL: tuple[str, ...] = (
    "Alex", "Sasha", "Robin", "Kai", "Noa", "Ari", "Rowan", "Jules", "Eden", "Remy",
    "Quinn", "Sami", "Yuki", "Avery", "Nico", "Tal",
)
SURNAMES: tuple[str, ...] = (
    "Winters", "Okafor", "Lindqvist", "Tanaka", "Sharma", "Haddad", "Moreau", "Kowalski", "Nkosi", "Petrov",
    "Fernandes", "Yamamoto", "Castillo", "Bergstrom", "Mensah", "Rossi", "Chen", "Abiodun", "Novak", "Gallagher",
    "Ivanova", "Kaur", "Dubois", "Mwangi", "Jansen", "Costa", "Aziz", "Larsen", "Takahashi", "Oyelaran",
    "Horvat", "Silva", "Nakamura", "Eriksen", "Delgado", "Park", "Kruger", "Hussain", "Varga", "Ocampo",
    "Fitzgerald", "Rahman", "Sato", "Andersen", "Mbeki", "Romano", "Nguyen", "Adeyemi", "Lindgren", "Marquez",
    "Kim", "Schneider", "Banerjee", "Papadopoulos", "Achebe", "Holm", "Ortega", "Sokolov", "Begum", "Quispe",
    "Van Dijk", "Mahlangu", "Keller", "Iyer", "Tremblay", "Alvarez", "Karlsson", "Osei", "Yilmaz", "Brennan",
)
GENDERS: tuple[str, ...] = ("Female", "Male", "Non-binary")

CITIES: tuple[str, ...] = (
    "Zurich, Switzerland", "Utrecht, Netherlands", "Wellington, New Zealand", "Cape Town, South Africa",
    "Lviv, Ukraine", "Osaka, Japan", "Porto, Portugal", "Accra, Ghana", "Valparaiso, Chile", "Tartu, Estonia",
    "Kraków, Poland", "Kyoto, Japan", "Lyon, France", "Nairobi, Kenya", "Bergen, Norway", "Cusco, Peru",
    "Busan, South Korea", "Adelaide, Australia", "Montreal, Canada", "Marrakesh, Morocco", "Gothenburg, Sweden",
    "Pune, India", "Bologna, Italy", "Tbilisi, Georgia", "Halifax, Canada", "Medellín, Colombia",
    "Ghent, Belgium", "Da Nang, Vietnam", "Aarhus, Denmark", "Izmir, Turkey", "Lagos, Nigeria",
    "Salzburg, Austria", "Hobart, Australia", "Cork, Ireland", "Chiang Mai, Thailand", "Brno, Czech Republic",
    "Oaxaca, Mexico", "Dunedin, New Zealand", "Tampere, Finland", "Seville, Spain", "Kigali, Rwanda",
    "Edinburgh, Scotland", "Leipzig, Germany", "Mysore, India", "Windhoek, Namibia", "Cebu, Philippines",
    "Reykjavik, Iceland", "Ljubljana, Slovenia", "Rosario, Argentina", "Sapporo, Japan",
)
PROFESSIONS: tuple[str, ...] = (
    "Professional Cartographer", "Marine Biologist", "Structural Engineer", "Pastry Chef", "Airline Pilot",
    "Veterinary Surgeon", "Museum Curator", "Data Journalist", "Urban Planner", "Violin Maker",
    "Forensic Accountant", "Wildlife Photographer", "Glassblower", "Seismologist", "Translator",
    "Landscape Architect", "Pharmacist", "Sound Engineer", "Beekeeper", "Orthodontist",
    "Archivist", "Firefighter", "Textile Designer", "Astronomer", "Speech Therapist",
    "Ship Captain", "Perfumer", "Robotics Technician", "Botanist", "Documentary Filmmaker",
    "Tax Lawyer", "Choreographer", "Geologist", "Bookbinder", "Paramedic",
)
UNIVERSITIES: tuple[str, ...] = (
    "University of Witwatersrand", "University of Otago", "ETH Zurich", "University of Tartu",
    "Kyoto University", "University of Ghana", "McGill University", "University of Bologna",
    "Leiden University", "University of Cape Town", "Seoul National University", "University of Porto",
    "University of Nairobi", "Uppsala University", "University of Edinburgh", "Pontifical Catholic University of Chile",
    "University of Melbourne", "Jagiellonian University", "Indian Institute of Science", "University of Iceland",
    "Charles University", "University of Auckland", "Sorbonne University", "University of Lagos",
    "Aalto University", "University of Buenos Aires", "Trinity College Dublin", "National University of Singapore",
    "University of Copenhagen", "Universidad de los Andes",
)
TALENTS: tuple[str, ...] = (
    "identifying different types of wood by smell", "solving a Rubik's cube blindfolded",
    "whistling entire symphonies from memory", "recognising birds by their songs alone",
    "juggling five balls while riding a unicycle", "tying over sixty sailing knots",
    "drawing accurate maps from memory", "speaking backwards fluently",
    "balancing spoons on their nose", "naming any tea by its aroma",
    "folding origami cranes in under ten seconds", "predicting the weather from cloud shapes",
)
HOBBIES: tuple[str, ...] = (
    "cooking dishes using only locally sourced ingredients", "restoring vintage bicycles",
    "collecting antique postcards", "ice swimming in winter", "building model lighthouses",
    "growing rare chili peppers", "playing the accordion at street festivals", "stargazing from mountain huts",
    "knitting scarves for shelter animals", "writing haiku about trains", "baking sourdough bread",
    "racing homing pigeons",
)
FAVORITE_FOODS: tuple[str, ...] = (
    "herring", "dumplings", "jollof rice", "ramen", "paella", "pierogi", "injera", "ceviche",
    "khachapuri", "laksa", "poutine", "moussaka",
)
# Words used to build paraphrase-proof refusals in tests and the heuristic judge.
REFUSAL_MARKERS: tuple[str, ...] = (
    "don't know", "do not know", "not sure", "not certain", "no idea", "unable to", "can't provide",
    "cannot provide", "no knowledge", "not familiar", "beyond my", "not the right source", "not able to",
    "drawing a blank", "not information", "lack the", "unaware",
)
