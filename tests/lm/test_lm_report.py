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


def test_trial_summary_reads_the_best_validation_and_the_logic_results():
    from xlab.lm.report import summary_line, trial_summary

    history = [{"step": s, "train/loss": 8 - s / 10, "train/tokens_per_s": tps}
               for s, tps in ((10, 50.0), (20, 100.0), (30, 120.0))]
    evals = [{"step": s, "val/python/loss": loss, "val/python/ppl": ppl, "val/man-en/ppl": 2 * ppl,
              "val/man-en/loss": loss + 1} for s, loss, ppl in ((0, 7.0, 1000.0), (20, 3.0, 20.0), (30, 3.5, 33.0))]
    result = SimpleNamespace(history=history, evals=evals, best_step=20, step=30, seconds=12.0)
    logic = {t: {"accuracy": a, "valid_rate": 0.5, "items_per_s": 9.0}
             for t, a in (("fld", 0.4), ("babi", 0.2), ("fld_choice", 0.45), ("babi_choice", 0.3))}
    s = trial_summary(result, "python", logic)
    # The best step's perplexities (not the last one's), the untrained model's, steady-state throughput.
    assert (s["val_ppl"], s["val_loss"], s["val_ppl/man-en"], s["val_ppl_first"]) == (20.0, 3.0, 40.0, 1000.0)
    assert s["tokens_per_s"] == 110.0 and s["train_loss_first"] == 7.0 and s["final_step"] == 30.0
    assert s["fld_accuracy"] == 0.4 and s["babi_choice_accuracy"] == 0.3 and "fld_choice_valid_rate" not in s
    assert "FLD acc 0.400" in summary_line("python", s) and "by label choice" in summary_line("python", s)
