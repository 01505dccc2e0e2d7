"""A short Markdown report with PNG plots, written beside the model.

What a reader needs to judge the run: the test figures of every model under both protocols
(the served model marked), each model's training loss on its own axis (the student's
distillation loss is a different quantity from the cross-entropies), validation NDCG@10 per
epoch, and the hyperparameters that produced it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a training container
import matplotlib.pyplot as plt
from lmrec.bundle import distillation_line, metric_label
from lmrec.promote import GATE_MODEL as SERVED  # the model the bundle serves
from matplotlib.patches import Patch

from training.champion import summary_line
from training.cold_start import cold_start_line
from training.split import TIME_TEST_AFTER, TIME_VALID_AFTER

BASELINES = ("popularity", "recent_popularity", "own_", "cooccurrence", "als", "ease")
COLOURS = {"served": "tab:red", "trained": "tab:orange", "baseline": "tab:gray"}


def sampled_protocol(metrics: dict) -> str | None:
    """The sampled protocol's key, `sampled<N>` with N = the sampled_negatives used."""
    for splits in metrics.values():
        for key in splits["test"]:
            if key.startswith("sampled"):
                return str(key)
    return None


def _kind(name: str, served: str = SERVED) -> str:
    if name == served:
        return "served"
    return "baseline" if name.startswith(BASELINES) else "trained"


def _label(name: str, served: str = SERVED) -> str:
    return f"{name} (served)" if name == served else name


def loss_kind(name: str, config: dict | None) -> str:
    """What a model's train_loss is, so its axis can say so."""
    train = (config or {}).get("train", {})
    student = (config or {}).get("student", {})
    if name == "student":
        alpha, temp = student.get("distill_alpha"), student.get("distill_temperature")
        weights = f" (alpha {alpha}, T {temp})" if alpha is not None else ""
        return f"distillation: alpha*T^2*KL + (1-alpha)*CE{weights}"
    if name.startswith("teacher") and train.get("loss") == "sampled":
        return f"sampled softmax CE, {train.get('num_negatives')} negatives"
    return "cross-entropy over the catalog"


def _plot_history(
    histories: dict[str, list[dict]], config: dict | None, path: Path, served: str = SERVED
) -> None:
    """One axis per model's loss (they are not comparable), then validation NDCG@10."""
    names = [n for n, h in histories.items() if h]
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 3.4))
    for ax, name in zip(axes, names, strict=False):
        history = histories[name]
        ax.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], marker=".")
        ax.set_title(f"{_label(name, served)}: train loss", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss_kind(name, config), fontsize=7)
    valid = axes[-1]
    for name in names:
        evald = [r for r in histories[name] if "valid_ndcg@10" in r]
        valid.plot(
            [r["epoch"] for r in evald],
            [r["valid_ndcg@10"] for r in evald],
            marker="o",
            markersize=3,
            linewidth=2.5 if name == served else 1.2,
            label=_label(name, served),
        )
    valid.set_title("valid NDCG@10 (full ranking)", fontsize=9)
    valid.set_xlabel("epoch")
    valid.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interval(block: dict, key: str) -> tuple[float, float] | None:
    """A 95% interval when the evaluation recorded one (`<key>_ci95`: [low, high])."""
    ci = block.get(f"{key}_ci95")
    return (float(ci[0]), float(ci[1])) if isinstance(ci, list | tuple) and len(ci) == 2 else None


def _plot_models(metrics: dict, path: Path, served: str = SERVED) -> None:
    names = list(metrics)
    protocols = [p for p in ("full", sampled_protocol(metrics)) if p]
    fig, axes = plt.subplots(1, len(protocols), figsize=(4.5 * len(protocols), 3.8))
    for ax, protocol in zip(axes, protocols, strict=True):
        blocks = [metrics[n]["test"].get(protocol, {}) for n in names]
        values = [b.get("ndcg@10", 0.0) for b in blocks]
        intervals = [_interval(b, "ndcg@10") for b in blocks]
        errors = None
        if all(intervals):
            errors = [
                [v - lo for v, (lo, _) in zip(values, intervals, strict=True)],  # type: ignore[misc]
                [hi - v for v, (_, hi) in zip(values, intervals, strict=True)],  # type: ignore[misc]
            ]
        ax.bar(
            names, values, yerr=errors, capsize=3, color=[COLOURS[_kind(n, served)] for n in names]
        )
        ax.set_title(f"test NDCG@10, {protocol}", fontsize=9)
        ax.tick_params(axis="x", rotation=25, labelsize=8)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    handles = [
        Patch(color=c, label=f"{k} model" if k != "baseline" else k) for k, c in COLOURS.items()
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=7, ncols=3)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(block: dict, key: str) -> str:
    value = block.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    interval = _interval(block, key)
    return f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


def _paired(full: dict) -> str:
    """The row's paired difference from co-occurrence on the same users, bold when beyond
    noise (its 95% interval excludes 0)."""
    found = full.get("ndcg@10_vs_cooccurrence")
    if not found:
        return "-"
    mean, low, high = found
    text = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"
    return f"**{text}**" if low > 0 or high < 0 else text


def results_table(metrics: dict, served: str = SERVED) -> str:
    """Markdown table: model x (test full HR/NDCG/MRR/coverage, test sampled HR/NDCG)."""
    sampled = sampled_protocol(metrics) or "sampled"
    lines = [
        "| model | full HR@10 | full NDCG@10 | NDCG@10 - co-occurrence, paired | full MRR "
        f"| coverage@10 | {sampled} HR@10 | {sampled} NDCG@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, splits in metrics.items():
        f, s = splits["test"]["full"], splits["test"].get(sampled, {})
        cells = [_cell(f, k) for k in ("hr@10", "ndcg@10")] + [_paired(f)]
        cells += [_cell(f, k) for k in ("mrr", "coverage@10")]
        cells += [_cell(s, k) for k in ("hr@10", "ndcg@10")]
        lines.append(f"| {_label(name, served)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _models_table(models: dict, served: str = SERVED) -> str:
    lines = [
        "| model | parameters | MACs / request | best epoch | epochs | train s |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        lines.append(
            f"| {_label(name, served)} | {m['parameters']:,} | {m['macs_per_request']:,} | "
            f"{m['best_epoch']} | {m['epochs_run']} | {m['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def baselines_table(costs: dict | None) -> str:
    """What each baseline cost, and the tuned ones' choice on valid (summary.baselines)."""
    if not costs:
        return "(not recorded)"
    lines = [
        "| baseline | seconds | chosen on valid | grid (valid NDCG@10) | peak fit MB | model MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in costs.items():
        if "skipped" in c:
            lines.append(f"| {name} | skipped: {c['skipped']} | | | | |")
            continue
        seconds = c.get("seconds", c.get("tune_seconds", 0.0) + c.get("test_seconds", 0.0))
        params = ", ".join(f"{k} {v:g}" for k, v in c.get("params", {}).items()) or "-"
        grid = "; ".join(
            ", ".join(f"{v:g}" for k, v in point.items() if k not in ("valid_ndcg@10", "seconds"))
            + f": {point['valid_ndcg@10']:.4f}"
            for point in c.get("grid", [])
        )
        lines.append(
            f"| {name} | {seconds:.1f} | {params} | {grid or '-'} | "
            f"{c.get('peak_fit_mb', '-')} | {c.get('model_mb', '-')} |"
        )
    return "\n".join(lines)


def hyperparameters_table(config: dict[str, Any] | None, chosen: dict | None = None) -> str:
    """Every setting of the run, grouped as the configuration groups them. A regulariser
    the plan chose for the teachers only (training/plan.py REGULARISERS) says so."""
    if not config:
        return "(not recorded)"
    chosen = chosen or {}
    teachers_only = set()
    if chosen.get("regularised") == "teachers":
        teachers_only = {"weight_decay", "ema_decay"} - set(chosen.get("given", []))
    lines = ["| group | setting | value |", "|---|---|---|"]
    for group, values in config.items():
        for key, value in values.items() if isinstance(values, dict) else [("", values)]:
            note = " (teachers; the students train with 0)" if key in teachers_only else ""
            lines.append(f"| {group} | `{key}` | {value}{note} |")
    return "\n".join(lines)


def _intervals_note(metrics: dict) -> str:
    blocks = [b for s in metrics.values() for b in s["test"].values()]
    if any(_interval(b, "ndcg@10") for b in blocks):
        return "Brackets: 95% confidence intervals over the evaluated users."
    return "No confidence intervals: this evaluation does not record them."


def champion_section(record: dict | None) -> str:
    """The gate's input: production and the served model on the same test users."""
    if record is None:
        return ""
    head = "## Against production (the promotion gate's input)\n\n"
    if "difference" not in record:
        line = summary_line(record) or ""
        return head + line[:1].upper() + line[1:] + ".\n"
    c, p, d = record["candidate"], record["production"], record["difference"]
    lo, hi = d["ci95"]

    def cell(fig: dict) -> str:
        a, b = fig["ndcg@10_ci95"]
        return f"{fig['ndcg@10']:.4f} [{a:.4f}, {b:.4f}]"

    return head + (
        f"Production `{record['production_version']}` scored on this run's "
        f"{record['users']:,} test users as it serves; "
        f"{record['targets_unknown_to_production']:,} of their test items and "
        f"{record['items_unknown_to_production']:,} catalog items are unknown to it.\n\n"
        "| model | test full NDCG@10 on the same users |\n|---|---|\n"
        f"| candidate (served) | {cell(c)} |\n| production | {cell(p)} |\n"
        f"| paired difference | {d['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}] |\n\n"
        f"Protocol: {record['protocol']}.\n"
    )


def content_line(record: dict | None) -> str:
    """Which catalog columns the model reads, and how (training/item_content.py)."""
    if not record:
        return "Item content: none (no catalog, no usable column, or content=off): ids only."
    parts = [f"text {', '.join(record['text'])}" if record["text"] else ""]
    parts.append(f"categorical {', '.join(record['categorical'])}" if record["categorical"] else "")
    numeric = record["numeric"]
    parts.append(
        "numeric " + ", ".join(f"{n} ({b} buckets)" for n, b in numeric.items()) if numeric else ""
    )
    used = "; ".join(p for p in parts if p)
    if record.get("models") == "none":
        return "Item content: not read (content_models=student, and student=false trains none)."
    who = {
        "all": "the teacher and the students read",
        "teacher": "the teacher reads",
        "student": "the students read (the teacher ids only: content_models=student)",
    }.get(record.get("models", ""), "the model reads")
    return (
        f"Item content: {who} {used}, hashed into {record['n_buckets']:,} rows "
        f"({record['mean_features_per_item']} features per item on average); the id part "
        f"was dropped in training with probability {record['id_dropout']:g}, so an item "
        "added after training is placed by its content alone."
    )


def _split_line(summary: dict) -> str:
    split = summary.get("split") or {"name": "loo"}
    users = f"{summary['evaluated_users']:,}"
    tie = summary.get("ties") or {}
    ties = ""
    if tie.get("share"):  # no sentence for data without ties
        order = "the file's order" if tie["mode"] == "file" else "a fresh order each epoch"
        share = f"{tie['share']:.1%}" if tie["share"] >= 0.001 else "under 0.1%"
        ties = (
            f" {share} of a user's consecutive rows share a timestamp; "
            f"training read them in {order} (tie_order {tie['chosen_by']})."
        )
    if split["name"] == "time":
        cuts = split.get("cuts") or {}
        return (
            f"Split: time, valid cut-off {cuts.get('valid')} and test cut-off "
            f"{cuts.get('test')} ({TIME_VALID_AFTER:.0%} and {TIME_TEST_AFTER:.0%} of the "
            "interactions at or after them); each asks "
            "for a user's first interaction at or after its cut-off given everything before "
            f"it; models train before the valid cut-off; {users} test users.{ties}"
        )
    return (
        f"Split: leave-one-out by time; {users} users with >= 3 interactions are evaluated." + ties
    )


def _seen(summary: dict) -> str:
    repeats = summary.get("repeats") or {}
    if repeats.get("mode") == "keep":
        return (
            f"with seen items ranked too (repeats kept: {repeats.get('share', 0):.1%} of rows "
            "repeat a (user, item) pair)"
        )
    return "with seen items excluded"


def parts_table(metrics: dict, served: str = SERVED) -> str:
    """Repeats kept: test full NDCG@10 [95%] over all targets, repeat targets (already in
    the user's history) and explore targets (new to the user); "" without repeats."""
    parts = ("full", "full_repeat", "full_explore")
    rows = [(m, s["test"]) for m, s in metrics.items() if "full_repeat" in s.get("test", {})]
    if not rows:
        return ""
    first = rows[0][1]
    header = " | ".join(
        f"{p.removeprefix('full_') if p != 'full' else 'all'} NDCG@10 ({first[p]['users']} users)"
        for p in parts
    )
    lines = [f"| model | {header} |", "|---|---|---|---|"]
    for name, test in rows:
        cells = " | ".join(_cell(test[p], "ndcg@10") for p in parts)
        lines.append(f"| {_label(name, served)} | {cells} |")
    return "Repeat and explore targets:\n\n" + "\n".join(lines)


def new_items_table(metrics: dict, served: str = SERVED) -> str:
    """Test full NDCG@10 and HR@10 [95%] over the users whose target no model trained on (an
    item first seen after the training cut), each model beside the content-only baseline
    and popularity; "" when no test target is such an item."""
    rows = [(m, s["test"]["full_new"]) for m, s in metrics.items() if "full_new" in s["test"]]
    if not rows:
        return ""
    # MRR too: on a large catalog a new item is rarely in any top 10, and 1/rank still shows
    # which model places it nearer the top.
    lines = ["| model | NDCG@10 | HR@10 | MRR |", "|---|---|---|---|"]
    for name, part in rows:
        cells = " | ".join(_cell(part, k) for k in ("ndcg@10", "hr@10", "mrr"))
        lines.append(f"| {_label(name, served)} | {cells} |")
    return (
        f"New items: the {rows[0][1]['users']} test users whose target has no training row "
        "(first seen after the training cut, as a new item arrives: a model knows it only "
        "through the catalog's columns, when it reads them; ranked against the whole "
        "catalog):\n\n" + "\n".join(lines)
    )


def write_report(
    model_dir: Path,
    metrics: dict,
    histories: dict[str, list[dict]],
    summary: dict,
    config: dict | None = None,
) -> Path:
    record = summary.get("served") or {"model": SERVED}  # the job picks the better small model
    served = metric_label(record)  # its metrics row: "<model>" or "<model>+transitions"
    # its training curve is the small model's own, without the transitions beside it
    _plot_history(histories, config, model_dir / "training_curve.png", record["model"])
    _plot_models(metrics, model_dir / "models.png", served)
    data = summary["data"]
    dropped = data.get("dropped", {})
    drop_line = ", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in dropped.items() if v)
    sampled = sampled_protocol(metrics) or "sampled"
    negatives = sampled.removeprefix("sampled") or "N"
    text = f"""# lmrec training report

Data: {data["interactions"]:,} interactions, {data["users"]:,} users, {data["items"]:,} items
(fingerprint `{summary["data_fingerprint"]}`); of {data.get("raw_rows", 0):,} rows read, the
loader dropped: {drop_line or "none"}.
{_split_line(summary)} Test figures below, k=10; "full" ranks the held-out item against the
whole catalog {_seen(summary)}, "{sampled}" against {negatives} random items the user never
touched.
The bundle serves **{served}** (marked "(served)"; {summary.get("served_why", "")}).
{distillation_line(summary.get("distillation"))}
{cold_start_line(summary.get("cold_start"))}
{content_line(data.get("content"))}
{_intervals_note(metrics)}

{results_table(metrics, served)}

{parts_table(metrics, served)}

{new_items_table(metrics, served)}

{_models_table(summary["models"], served)}

Baselines: seconds to fit and evaluate (for the tuned ones: every grid point fitted on train
and scored on valid, then test), the hyperparameters valid chose, and the traced peak
memory of one fit:

{baselines_table(summary.get("baselines"))}

{champion_section(summary.get("champion"))}

Trained on {summary["device"]} ({summary["world_size"]} process(es)); the whole job took
{summary["wall_seconds"]:.0f} s. MACs / request: multiply-adds to score the catalog for one
user with a full history window.

Training loss per model, each on its own axis (the student's loss is the distillation
objective, not comparable with the cross-entropies), and validation NDCG@10 per epoch:

![training curves](training_curve.png)

Test NDCG@10 per model (red: served, orange: other trained models, grey: baselines):

![models](models.png)

## Hyperparameters

{hyperparameters_table(config, summary.get("chosen"))}
"""
    path = model_dir / "report.md"
    path.write_text(text)
    return path
