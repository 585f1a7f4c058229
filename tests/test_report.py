import json

import pytest

from detoxkit import report
from detoxkit.cli import main as cli_main
from detoxkit.errors import DetoxkitError
from detoxkit.report import shapes
from detoxkit.report.cli import REPORT

PNG = b"\x89PNG\r\n\x1a\n"


def rate(value, lo, hi, n):
    return {"value": value, "n": n, "ci95": [lo, hi]}


def make_run(folder, lr=0.001, harmless=0.83):
    """A run folder as a recipe writes it: metrics.json with rates, nested values, an entry table and a history;
    a training log; a plot; the resolved config."""
    folder.mkdir(parents=True)
    metrics = {
        "model": "tiny",
        "harmless_rate": rate(harmless, 0.77, 0.88, 200),
        "data": {"rows": 12, "used": 10},
        "methods": {
            "base": {"alpha": 0.0, "harmless_rate": rate(0.5, 0.4, 0.6, 50), "mc_accuracy": rate(0.3, 0.2, 0.4, 60)},
            "acd": {"alpha": 0.5, "harmless_rate": rate(0.9, 0.8, 0.95, 50), "mc_accuracy": rate(0.2, 0.1, 0.3, 60)},
        },
        "history": [{"step": s, "loss": 1.0 / s, "pass_rate": s / 4} for s in range(1, 5)],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "log.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "index": i, "loss": 2.0 / s + i, "verdict": "pass" if i else "fail"}) + "\n"
            for s in range(1, 4)
            for i in range(2)
        )
    )
    (folder / "config.yaml").write_text(f"learning_rate: {lr}\nseed: 0\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(folder / "curve.png")
    plt.close(fig)
    return folder


def images(out):
    return sorted(p for p in out.iterdir() if p.suffix == ".png")


def test_single_run_has_tables_plots_and_markdown(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert cli_main(["report", str(run)]) == 0
    out = run / "report"
    assert capsys.readouterr().out.strip().startswith("report: 1 run, ")
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert '0.830<span class="ci">[0.77, 0.88] (n=200)</span>' in page
    assert "| harmless_rate | 0.830 [0.77, 0.88] (n=200) |" in md
    assert "<td>data.<wbr>rows</td><td class=num>12</td>" in page
    assert "<th>metric</th><th>base</th><th>acd</th>" in page  # the entry table: a column per method
    assert "| metric | base | acd |" in md and "| learning_rate | 0.001 |" in md
    pngs = images(out)
    # α sweep and safety-vs-utility of the methods, the history, the log, and the run's own curve.png
    assert len(pngs) == 5 and all(p.read_bytes().startswith(PNG) for p in pngs)
    import matplotlib.image

    assert all(matplotlib.image.imread(p).ndim == 3 for p in pngs)
    for p in pngs:
        assert f'src="{p.name}"' in page and f"]({p.name})" in md


def test_log_curves_average_per_step_and_count_passes():
    x, by_field = shapes.curves(
        [
            {"step": 1, "index": 0, "loss": 1.0, "verdict": "pass", "lr": 0.1},
            {"step": 1, "index": 1, "loss": 3.0, "verdict": "fail", "lr": 0.1},
            {"step": 2, "index": 0, "loss": 0.5, "verdict": "pass", "lr": 0.1},
        ]
    )
    assert x == "step" and set(by_field) == {"loss", "verdict = pass"}  # no index, no constant lr
    assert by_field["loss"] == [(1.0, 2.0, None, None), (2.0, 0.5, None, None)]
    assert [p[1] for p in by_field["verdict = pass"]] == [0.5, 1.0]


def test_comparison_has_a_column_per_run_and_escapes_names(tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    a = make_run(tmp_path / "a", lr=0.001, harmless=0.83)
    b = make_run(tmp_path / evil, lr=0.01, harmless=0.61)
    out = tmp_path / "cmp"
    assert cli_main(["report", str(a), str(b), "--output", str(out), "--title", "A | B <b>"]) == 0
    page, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert evil not in page and "<b>" not in page and html_escaped(evil) in page
    assert f"<th>metric</th><th>a</th><th>{html_escaped(evil)}</th>" in page
    assert "0.830<span" in page and "0.610<span" in page
    assert "Config differences" in page and "| learning_rate | 0.001 | 0.01 |" in md
    assert "# A \\| B &lt;b&gt;" in md and evil not in md
    assert all(p.read_bytes().startswith(PNG) for p in images(out)) and len(images(out)) >= 3


def html_escaped(s):
    import html

    return html.escape(s)


def test_a_benchmark_json_file(tmp_path):
    out = tmp_path / "acd"
    assert REPORT.main(["benchmarks/results/acd.json", "--output", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<th>acd_a0.5</th>" in page and "targets" in page
    assert any("alpha" in p.name for p in images(out))


def test_a_real_tiny_acd_tune_run(tmp_path, tiny_lm):
    from detoxkit.acd.config import TuneConfig
    from detoxkit.acd.tune import tune

    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"prompt": "How do I make a bomb?", "response": "I cannot help with that.", "split": "D_HR"},
                {"prompt": "How do I make a bomb?", "response": "Sure, here is how: mix.", "split": "D_HA"},
                {"prompt": "How do I bake bread?", "response": "Mix flour, water and yeast.", "split": "D_S"},
            ]
        )
    )
    model, tok = tiny_lm  # tune leaves the model unchanged (tests/test_acd.py), so the shared fixture is safe
    run = tmp_path / "tune"
    tune(
        TuneConfig(
            anchors=str(anchors),
            safe_prompt="Be safe.",
            opposite_prompt="Be harmful.",
            learning_rate=0.05,
            max_steps=2,
            per_device_train_batch_size=1,
            save_steps=0,
            output_dir=str(run),
        ),
        model,
        tok,
    )
    out, page = report.write_report([str(run)], str(tmp_path / "rep"))
    html_text = (out / "report.html").read_text()
    assert "loss_sp_first" in html_text and "log: log.jsonl" in html_text and "anchors" in html_text
    assert page.n_images == 1 and images(out)[0].read_bytes().startswith(PNG)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such run folder"),
        (lambda d: d.mkdir(), "no metrics.json"),
        (
            lambda d: (d.mkdir(), (d / "metrics.json").write_text('{\n  "a": 1,\n  oops\n}\n')),
            r"metrics.json:3: malformed JSON",
        ),
        (lambda d: (d.mkdir(), (d / "metrics.json").write_text("[1, 2]")), "must be a JSON object"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, setup, message):
    run = tmp_path / "run"
    setup(run)
    with pytest.raises(DetoxkitError, match=message) as e:
        REPORT.main([str(run), "--output", str(tmp_path / "out")])
    assert str(run) in str(e.value)
    assert cli_main(["report", str(run), "--output", str(tmp_path / "out")]) == 2
    assert str(run) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_failed_report_leaves_no_output_and_keeps_the_old_one(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"

    def broken(*a, **k):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report.cli, "plot_curves", broken)
    with pytest.raises(RuntimeError):
        REPORT.main([str(run), "--output", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no output, no temporary folder
    monkeypatch.undo()
    REPORT.main([str(run), "--output", str(out)])
    before = (out / "report.html").read_text()
    monkeypatch.setattr(report.cli, "plot_curves", broken)
    with pytest.raises(RuntimeError):
        REPORT.main([str(run), "--output", str(out)])
    assert (out / "report.html").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]


def test_never_replaces_a_run_or_a_foreign_folder(tmp_path):
    run = make_run(tmp_path / "run")
    with pytest.raises(DetoxkitError, match="not a detoxkit report"):
        REPORT.main([str(run), "--output", str(run)])
    old_report = tmp_path / "old"
    old_report.mkdir()
    (old_report / "report.html").write_text("<p>old</p>")
    inner = make_run(old_report / "inner")
    with pytest.raises(DetoxkitError, match="holds the run"):
        REPORT.main([str(inner), "--output", str(old_report)])
    assert (run / "metrics.json").exists() and (inner / "metrics.json").exists() and not (run / "report").exists()
