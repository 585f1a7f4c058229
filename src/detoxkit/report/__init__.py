"""`detoxkit report RUN ...`: an HTML and a markdown page of one run, or a comparison of several, with plots.

Nothing here knows a recipe by name. Metrics are read by shape: a rate ``{"value", "n", "ci95"}`` (from
:mod:`detoxkit.eval.stats`) is one cell; a mapping whose values are all mappings (methods, sources, rounds by
name) is a table with a column per entry; a list of mappings with a ``step``/``round``/``epoch`` field is a
curve, as are the JSONL logs beside metrics.json.

Rooms: ``read`` (run folders and metrics files), ``shapes`` (what a value is, by its shape), ``page`` (HTML and
markdown), ``plots``, ``cli`` (the two pages and the command).
"""

from .cli import write_report

__all__ = ["write_report"]
