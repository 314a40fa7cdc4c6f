"""Small MLLMU-Bench and CLEAR tables in their published schemas (rows as pyarrow's
`to_pylist()` returns them, with real PNG bytes), and a Parquet writer for them."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw


def png(seed: int, size: int = 40) -> bytes:
    img = Image.new("RGB", (size, size), ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    ImageDraw.Draw(img).ellipse([8, 6, 32, 34], fill=(240, 200, 170))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _img(seed: int) -> dict:
    return {"bytes": png(seed), "path": f"{seed}.png"}


def _mcq(pid: int, kind: str) -> dict:
    return {"Question": f"Which city does person {pid} live in ({kind})?",
            "Options": {"A": "Oslo", "B": "Lima", "C": f"Town{pid}", "D": "Pune"}, "Correct_Answer": "C"}


def mllmu_row(pid: int, *, celeb: bool = False, variants: int = 0) -> dict:
    name = f"Celeb Star{pid}" if celeb else f"Ana Fict{pid}"
    gen = [{"Question": "What is the profession of the person in the image?", "Ground_Truth":
            f"This person works as a baker number {pid}.", "Type": "Image_Textual"},
           {"Question": f"Where does {name} live?", "Ground_Truth": f"{name} lives in Town{pid}.", "Type": "Pure_Text"}]
    mask = [{"Question": f"{name} was born in [Blank].", "Ground_Truth": f"City{pid}", "Type": "Pure_Text"},
            {"Question": "The person in the image was born in [Blank].", "Ground_Truth": f"City{pid}",
             "Type": "Image_Textual"}]
    image = [_img(100 * pid + j) for j in range(variants)] if variants else _img(pid + (50 if celeb else 0))
    return {"image": image, "ID": str(pid), "Directory": f"dir/{pid}", "biography": f"{name} is a baker in Town{pid}.",
            "question": "Who is this?", "answer": name,
            "Classification_Task": {"Image_Textual_Questions": [_mcq(pid, "image")],
                                    "Pure_Text_Questions": [_mcq(pid, "text")]},
            "Mask_Task": mask, "Generation_Task": gen}


def mllmu_tables(n: int = 6) -> dict[str, list[dict]]:
    """Full_Set of n profiles; forget_5/retain_95 = 1/rest, forget_10/retain_90 = 2/rest, forget_15/
    retain_85 = 3/rest; ft_Data with two QA pairs each; 2 celebrities; a Test_Set of 2 profiles."""
    full = [mllmu_row(i) for i in range(1, n + 1)]
    t = {"Full_Set": full}
    for pct, k in ((5, 1), (10, 2), (15, 3)):
        t[f"forget_{pct}"], t[f"retain_{100 - pct}"] = full[:k], full[k:]
    t["ft_Data"] = [{"image": _img(i), "ID": str(i), "metadata": json.dumps(
        [{"Question": "What is the name of this person?", "Answer": f"This is Ana Fict{i}."},
         {"Question": "Where does this person live?", "Answer": f"This person lives in Town{i}."}])}
        for i in range(1, n + 1)]
    t["Retain_Set"] = [mllmu_row(i, celeb=True) for i in (1, 2)]
    t["Test_Set"] = [mllmu_row(i, variants=2) for i in (1, 2)]
    return t


def clear_tables(n: int = 5) -> dict[str, list[dict]]:
    """full: n persons with two captioned images each; forget01/retain99 = 1/rest, forget05 = 2,
    forget10 = 2; +tofu rows (one with a name column, one found by name in the text); _perturbed."""
    names = [f"Bo Author{i}" for i in range(n)]
    full = [{"image": _img(10 * i + j), "caption": f"{nm} signing book {j} in a red coat.", "name": nm}
            for i, nm in enumerate(names) for j in range(2)]
    t: dict[str, list[dict]] = {"full": full}
    for f, r, k in (("forget01", "retain99", 1), ("forget05", "retain95", 2), ("forget10", "retain90", 2)):
        t[f] = [x for x in full if x["name"] in names[:k]]
        t[r] = [x for x in full if x["name"] not in names[:k]]
    tofu = [{"question": f"What genre does {nm} write?", "answer": f"{nm} writes mystery novels {i}."}
            for i, nm in enumerate(names)]
    # as published: image rows (no question) and TOFU rows (no image) in one table, no name column
    blank = {"image": None, "caption": None}
    t["full+tofu"] = [{"image": x["image"], "caption": x["caption"], "question": None, "answer": None}
                      for x in full] + [{**blank, **r} for r in tofu]
    # a TOFU row that names its person by surname only: found among the config's own persons
    t["forget05+tofu"] = [{**blank, "question": "Which prize did Author1 win?", "answer": "The Gold Quill, in 2001."}]
    t["full_perturbed"] = [{**x, "perturbed_captions": [x["caption"].replace("red", "blue"),
                                                        x["caption"].replace("red", "green")],
                            "paraphrased_caption": x["caption"].replace("signing", "autographing"),
                            "perturbed_names": ["Zed Other"]} for x in full[:4]]
    return t


def as_source(tables: dict[str, list[dict]]):
    from smfa_eval.importers.common import MemorySource

    return MemorySource({c: {f"{c}/train-00000-of-00001.parquet": rows} for c, rows in tables.items()})


def write_parquet(root: Path, tables: dict[str, list[dict]]) -> Path:
    """The tables as the published folders, `<config>/train-00000-of-00001.parquet` (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    opt = pa.struct([(k, pa.string()) for k in "ABCD"])
    mcq = pa.list_(pa.struct([("Question", pa.string()), ("Options", opt), ("Correct_Answer", pa.string())]))
    open_q = pa.list_(pa.struct([("Question", pa.string()), ("Ground_Truth", pa.string()), ("Type", pa.string())]))

    def row_schema(img) -> pa.Schema:
        return pa.schema([("image", img), ("ID", pa.string()), ("Directory", pa.string()),
                          ("biography", pa.string()), ("question", pa.string()), ("answer", pa.string()),
                          ("Classification_Task", pa.struct([("Image_Textual_Questions", mcq),
                                                             ("Pure_Text_Questions", mcq)])),
                          ("Mask_Task", open_q), ("Generation_Task", open_q)])

    for config, rows in tables.items():
        if config == "ft_Data":
            schema = pa.schema([("image", image), ("ID", pa.string()), ("metadata", pa.string())])
        elif config == "Test_Set":
            schema = row_schema(pa.list_(image))
        elif config.startswith(("Full", "forget_", "retain_", "Retain_")):
            schema = row_schema(image)
        else:  # CLEAR: let pyarrow infer (strings, image structs, lists of strings)
            schema = None
        d = root / config
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), d / "train-00000-of-00001.parquet")
    return root
