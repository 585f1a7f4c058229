"""`detoxkit data list` and `detoxkit data show NAME [--n 5]`."""

from __future__ import annotations

import argparse
import json


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="detoxkit data", description="Builtin datasets: their source, license and rows.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every builtin dataset with its fields, source and license")
    show = sub.add_parser("show", help="print the first rows of a dataset (builtin:NAME, a file, or a datasets name)")
    show.add_argument("name")
    show.add_argument("--n", type=int, default=5)
    show.add_argument("--data_dir", default=None, help="the shared corpora folder")
    args = parser.parse_args(argv)
    from ..data import REGISTRY, load_records

    if args.action == "list":
        for entry in sorted(REGISTRY.values(), key=lambda e: (e.origin, e.name)):
            print(f"builtin:{entry.name}  [{entry.origin}]  fields: {', '.join(entry.fields)}")
            print(f"    {entry.description}")
            print(f"    source: {entry.source}; license: {entry.license}")
        return 0
    name = args.name if ":" in args.name or "." in args.name else f"builtin:{args.name}"
    rows = load_records(name, data_dir=args.data_dir)
    print(f"{name}: {len(rows)} rows")
    for row in rows[: args.n]:
        print(json.dumps(row, ensure_ascii=False)[:400])
    return 0
