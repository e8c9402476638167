"""The comparison report: corpus x task rows from trial runs, markdown table, plots."""

from types import SimpleNamespace

import matplotlib.pyplot as plt

from xlab.lm.report import (
    accuracy_figure,
    comparison_rows,
    curves_figure,
    depth_figure,
    loss_figure,
    markdown_table,
)


def _run(corpus, fld, babi, ppl):
    metrics = {"fld_accuracy": fld, "fld_valid_rate": 0.9, "babi_accuracy": babi, "babi_valid_rate": 0.5,
               "val_ppl": ppl, "val_ppl_first": 2000.0, "fld_choice_accuracy": 0.4}
    return SimpleNamespace(data=SimpleNamespace(params={"data.corpus": corpus}, metrics=metrics),
                           info=SimpleNamespace(status="FINISHED"))


def test_rows_table_and_figures():
    runs = [_run("python", 0.5, 0.2, 30.0), _run("man-en", 0.3, 0.1, 40.0)]
    rows = comparison_rows(runs, {"python": {"mean": 10.3}}, {"python": "code", "man-en": "nl"}.get)
    assert [(r["task"], r["corpus"]) for r in rows] == [("babi", "python"), ("babi", "man-en"),
                                                          ("fld", "python"), ("fld", "man-en")]
    fld_py = rows[2]
    assert fld_py["accuracy"] == 0.5 and fld_py["kind"] == "code" and fld_py["ast_depth_mean"] == 10.3
    assert rows[0]["choice_accuracy"] is None and rows[3]["ast_depth_mean"] is None
    table = markdown_table(rows)
    assert table.count("\n") == 6 and "| python | code | fld | 0.500 | 0.900 | 0.400 | 30.000 |" in table
    history = [{"step": s, "train/loss": 8 - s / 10} for s in (10, 20)]
    evals = [{"step": s, "val/python/loss": 7.0, "val/python/ppl": 1000 / (s + 1), "val/man-en/loss": 7.5}
             for s in (0, 20)]
    for fig in (accuracy_figure(rows), depth_figure(rows), curves_figure("t", history, evals),
                loss_figure({"python": {"history": history, "evals": evals}})):
        assert fig.axes
        plt.close(fig)
