"""The grokking-tickets study's pieces: where a stage-2 variant starts, the steps-to-grok table, the plots.

``jobs/grokking_tickets.py`` trains a dense network (stage 1), then one variant per trial (stage 2)
from that network's states; these functions are the study logic between the two::

    init, masks, weight_decay = variant_start(TicketConfig("ticket", rate=0.6), dense)  # init/final/snapshots
    rows = steps_to_grok_rows(child_runs(parent_id), client, thresholds=(0.95, 0.99))
    metrics = speedup_metrics(pd.DataFrame(rows), rate=0.6, threshold=0.95)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import nn

from xlab.config import check

Variant = Literal["dense", "ticket", "random", "snip", "grasp", "synflow", "same_norm", "no_wd", "memorization"]
State = dict[str, Any]


@dataclasses.dataclass
class TicketConfig:
    """Stage 2 of the study: which variant a trial trains and how the ticket is cut."""

    variant: Variant = "ticket"
    """What one stage-2 trial trains (set by the sweep)."""
    rate: float = 0.6
    """Fraction of weights pruned (the authors' `sparsity` 0.4 = fraction kept = rate 0.6)."""
    scope: Literal["global", "layer"] = "global"
    variants: tuple[Variant, ...] = ("ticket", "random", "same_norm", "snip", "grasp", "synflow", "no_wd",
                                     "memorization")
    max_steps: int = 0
    """Step cap of stage-2 trials (0 = train.steps); baselines that never grok run to this cap."""
    memorization_step: int = 2000
    """Dense step whose weights give the 'memorization' ticket."""
    eval_every: int = 0
    """Evaluation interval of the stage-2 trials (0 = train.eval_every). Tickets grok within a few
    hundred steps, so a 100-step grid would quantize their steps-to-grok by about +-20%."""
    periodicity_every: int = 0
    """Measure the neurons' periodicity (xlab.analysis.periodicity: spectrum of W_in . W_E, Shannon
    entropy over frequencies) every this many steps as well (0: at the start and the end only).
    Modular tasks only."""

    def __post_init__(self) -> None:
        check(0.0 <= self.rate < 1.0, "ticket.rate", f"must be in [0, 1), got {self.rate}")
        check(self.eval_every >= 0 and self.periodicity_every >= 0, "ticket.eval_every/periodicity_every",
              "must be >= 0")


def variant_start(
    cfg: TicketConfig, dense: dict[str, Any], *, seed: int = 0, model_fn: Callable[[], nn.Module] | None = None,
    batch: tuple[Any, Any] | None = None, loss_fn: Callable | None = None,
) -> tuple[State, dict[str, Any] | None, bool]:
    """(initial state, masks or None, keep weight decay) of stage-2 variant ``cfg.variant`` at pruning
    rate ``cfg.rate`` from the dense run's states ``dense`` (``init``, ``final``, ``snapshots``):

    * ticket / no_wd: global (or per-layer) magnitude mask of the final weights on the exact init
      (no_wd: retrained without weight decay); memorization: the same from the snapshot at
      ``cfg.memorization_step``; same_norm: the dense init scaled to the ticket's norm, no mask;
    * random: a random mask of the same density (seeded ``seed + 1``);
    * snip / grasp / synflow: pruning at initialization, scoring the untrained ``model_fn()`` on the
      training ``batch`` with ``loss_fn``.
    """
    from xlab.prune import make_ticket, pai_masks, random_masks, rewind_state, same_norm_state

    variant, rate, scope, init = cfg.variant, cfg.rate, cfg.scope, dense["init"]
    if variant in ("ticket", "no_wd", "same_norm"):
        init_masked, masks = make_ticket(dense["final"], init, rate, scope)
        if variant == "same_norm":
            return same_norm_state(init, masks)[0], None, True
        return init_masked, masks, variant != "no_wd"
    if variant == "memorization":
        snap = dense["snapshots"].get(cfg.memorization_step)
        check(snap is not None, "ticket.memorization_step",
              f"the dense run has no snapshot at step {cfg.memorization_step}")
        init_masked, masks = make_ticket(snap, init, rate, scope)
        return init_masked, masks, True
    if variant == "random":
        masks = random_masks(init, rate, seed=seed + 1, scope=scope)
        return rewind_state(init, masks), masks, True
    check(model_fn is not None and batch is not None and loss_fn is not None, "ticket.variant",
          f"pruning at init ({variant}) needs the model factory, a training batch and the loss")
    model = model_fn()
    model.load_state_dict(init)
    masks = pai_masks(variant, model, rate, batch, loss_fn=loss_fn, scope=scope)
    return rewind_state(init, masks), masks, True


def steps_to_grok_rows(runs: Sequence[Any], client: Any, thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """One row per trial run: variant, rate, seed, the first step its test accuracy reached the first and
    the last of ``thresholds`` (cap + 1 when never: the logged curve's last step + 1, so trials that ASHA
    stopped early still get their numbers), whether it reached the first, final accuracy, density and
    the periodicity entropy."""
    t0, t1 = f"{thresholds[0]:g}", f"{thresholds[-1]:g}"
    rows = []
    for run in runs:
        p, m = run.data.params, run.data.metrics
        acc = sorted((h.step, h.value) for h in client.get_metric_history(run.info.run_id, "test/acc"))
        first = {t: next((s for s, v in acc if v >= t), None) for t in thresholds}
        cap = max((s for s, _ in acc), default=0) + 1
        dense = p["ticket.variant"] == "dense"
        rows.append({"variant": p["ticket.variant"], "rate": 0.0 if dense else float(p["ticket.rate"]),
                     "seed": int(p["seed"]), "status": run.info.status,
                     f"steps_to_{t0}": first[thresholds[0]] or cap, f"steps_to_{t1}": first[thresholds[-1]] or cap,
                     "reached": float(first[thresholds[0]] is not None), "final_test_acc": m.get("test/acc"),
                     "density": m.get("density", 1.0), "freq_entropy": m.get("periodicity/entropy"),
                     "freq_entropy_ref": m.get("periodicity/entropy_ref")})
    return rows


def variant_label(variant: str, rate: Any) -> str:
    """Curve label of a trial: ``dense`` or ``ticket r0.6``."""
    return variant if variant == "dense" else f"{variant} r{rate}"


def speedup_metrics(table: Any, rate: float, threshold: float) -> dict[str, float]:
    """Mean steps to ``threshold`` of the dense runs and of the tickets at ``rate`` that reached it,
    and their ratio ``speedup_<threshold>`` (when both exist)."""
    t = f"{threshold:g}"
    dense = table[table.variant == "dense"]
    ticket = table[(table.variant == "ticket") & (table.rate == rate) & (table.reached == 1.0)]
    metrics = {}
    if not dense.empty:
        metrics[f"dense_steps_to_{t}"] = float(dense[f"steps_to_{t}"].mean())
    if not ticket.empty:
        metrics[f"ticket_steps_to_{t}"] = float(ticket[f"steps_to_{t}"].mean())
    if len(metrics) == 2:
        metrics[f"speedup_{t}"] = metrics[f"dense_steps_to_{t}"] / metrics[f"ticket_steps_to_{t}"]
    return metrics


def comparison_figure(curves: dict[str, list[dict]], title: str) -> Any:
    """Test accuracy vs step of every variant (dense and ticket drawn thicker)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, hist in sorted(curves.items()):
        ax.plot([r["step"] for r in hist], [r["test/acc"] for r in hist], label=label,
                lw=2.2 if label.startswith(("dense", "ticket")) else 1.2)
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def rate_figure(table: Any, column: str) -> Any:
    """Mean ``column`` (steps to grok) of the tickets vs pruning rate, with the dense runs' mean."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    t = table[table.variant == "ticket"].groupby("rate", as_index=False)[column].mean()
    ax.plot(t["rate"], t[column], "o-")
    ax.axhline(table[table.variant == "dense"][column].mean(), color="k", ls=":", label="dense")
    ax.set_xlabel("pruning rate (fraction pruned)")
    ax.set_ylabel(column.replace("_", " ") + " (not reached: cap + 1)")
    ax.set_yscale("log")
    ax.legend()
    return fig
