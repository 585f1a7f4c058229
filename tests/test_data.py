import subprocess
import sys

import pytest

from detoxkit.data import load_records, read_file, require_columns, to_format
from detoxkit.errors import DataError, DetoxkitError


def test_reads_every_format(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"prompt": "p1", "completion": "c1"}\n\n{"prompt": "p2", "completion": "c2"}\n')
    (tmp_path / "a.csv").write_text('prompt,completion\np1,"c, with comma"\np2,c2\n')
    (tmp_path / "a.tsv").write_text("prompt\tcompletion\np1\tc1\n")
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    pq.write_table(pa.table({"prompt": ["p1"], "completion": ["c1"]}), tmp_path / "a.parquet")
    assert [r["completion"] for r in read_file(tmp_path / "a.jsonl")] == ["c1", "c2"]
    assert read_file(tmp_path / "a.jsonl").lines == [1, 3]
    assert read_file(tmp_path / "a.csv")[0]["completion"] == "c, with comma"
    assert read_file(tmp_path / "a.tsv")[0]["prompt"] == "p1"
    assert read_file(tmp_path / "a.parquet")[0]["completion"] == "c1"
    assert [r["text"] for r in read_file(tmp_path / "a.txt")] == ["one", "two"]
    assert to_format(read_file(tmp_path / "a.csv"), "prompt_completion")[1] == {"prompt": "p2", "completion": "c2"}


def test_bad_json_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: bad JSON line"):
        read_file(p)


def test_jsonl_rows_with_unicode_line_separators_round_trip(tmp_path):
    """Model outputs hold U+0085 / U+2028, which json.dumps(ensure_ascii=False) leaves as they are: a JSONL row
    ends at a newline only."""
    from detoxkit.runs import append_jsonl

    rows = [{"response": "a\u0085b\u2028c\x1cd"}, {"response": "plain"}]
    append_jsonl(tmp_path / "gen.jsonl", rows)
    assert list(read_file(str(tmp_path / "gen.jsonl"))) == rows


def test_missing_column_names_file_line_and_field(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("prompt,answer\nhello,world\n")
    with pytest.raises(DataError, match=r"x.csv:2: field 'completion': missing column \(found: prompt, answer\)"):
        to_format(read_file(p), "prompt_completion")
    # the same data mapped onto the right column works
    assert to_format(read_file(p), "prompt_completion", {"completion": "answer"})[0]["completion"] == "world"


def test_empty_value_and_empty_file_and_encoding(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"prompt": "a"}\n{"prompt": "  "}\n')
    with pytest.raises(DataError, match=r"e.jsonl:2: field 'prompt': empty value"):
        require_columns(read_file(p), ["prompt"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: file is empty"):
        read_file(empty)
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("text\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.tsv:3: not valid UTF-8"):
        read_file(latin)


def test_unknown_sources_are_clear_errors(tmp_path):
    with pytest.raises(DetoxkitError, match="unknown builtin dataset"):
        load_records("builtin:nope")
    with pytest.raises(DetoxkitError, match="no such file"):
        load_records(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "content,expected",
    [
        ('{"text": "a"}\n{bad\n', "bad.jsonl:2: bad JSON line"),
        ("", "bad.jsonl: file is empty"),
    ],
)
def test_cli_exit_code_2_with_one_line(tmp_path, content, expected):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    out = subprocess.run([sys.executable, "-m", "detoxkit.cli", "data", "show", str(p)], capture_output=True, text=True)
    assert out.returncode == 2
    assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_shared_corpora_load(tmp_path):
    rows = load_records("builtin:toxigen")
    assert len(rows) == 6514 and {r["label"] for r in rows} == {0, 1}
    para = load_records("builtin:paradetox")
    assert len(para) > 11000 and all(r["references"] for r in para[:100])


def test_missing_data_dir_is_clear(tmp_path, monkeypatch):
    from detoxkit import assets

    monkeypatch.setenv("DETOXKIT_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(assets, "__file__", str(tmp_path / "a" / "b" / "assets.py"))
    with pytest.raises(DetoxkitError, match="shared corpora folder was not found"):
        load_records("builtin:toxigen")
