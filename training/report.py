"""A short Markdown report with PNG plots, written beside the model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in a training container
import matplotlib.pyplot as plt


def _plot_history(histories: dict[str, list[dict]], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, history in histories.items():
        ax1.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], label=name)
        evald = [r for r in history if "valid_ndcg@10" in r]
        ax2.plot(
            [r["epoch"] for r in evald],
            [r["valid_ndcg@10"] for r in evald],
            marker="o",
            markersize=3,
            label=name,
        )
    ax1.set_xlabel("epoch")
    ax1.set_title("train loss")
    ax2.set_xlabel("epoch")
    ax2.set_title("valid NDCG@10 (full ranking)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_models(metrics: dict, path: Path) -> None:
    names = list(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, protocol in zip(axes, ("full", "sampled100"), strict=True):
        values = [metrics[n]["test"].get(protocol, {}).get("ndcg@10", 0.0) for n in names]
        colours = [
            "tab:gray" if n.startswith(("popularity", "cooccurrence")) else "tab:orange"
            for n in names
        ]
        ax.bar(names, values, color=colours)
        ax.set_title(f"test NDCG@10, {protocol}")
        ax.tick_params(axis="x", rotation=20)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_table(metrics: dict) -> str:
    """Markdown table: model x (test full HR/NDCG/MRR/coverage, test sampled100 HR/NDCG)."""
    lines = [
        "| model | full HR@10 | full NDCG@10 | full MRR | coverage@10 "
        "| sampled100 HR@10 | sampled100 NDCG@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, splits in metrics.items():
        f, s = splits["test"]["full"], splits["test"]["sampled100"]
        lines.append(
            f"| {name} | {f['hr@10']:.4f} | {f['ndcg@10']:.4f} | {f['mrr']:.4f} | "
            f"{f['coverage@10']:.4f} | {s['hr@10']:.4f} | {s['ndcg@10']:.4f} |"
        )
    return "\n".join(lines)


def _models_table(models: dict) -> str:
    lines = [
        "| model | parameters | MACs / request | best epoch | epochs | train s |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        lines.append(
            f"| {name} | {m['parameters']:,} | {m['macs_per_request']:,} | "
            f"{m['best_epoch']} | {m['epochs_run']} | {m['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def write_report(
    model_dir: Path, metrics: dict, histories: dict[str, list[dict]], summary: dict
) -> Path:
    _plot_history(histories, model_dir / "training_curve.png")
    _plot_models(metrics, model_dir / "models.png")
    data = summary["data"]
    text = f"""# lmrec training report

Data: {data["interactions"]:,} interactions, {data["users"]:,} users, {data["items"]:,} items
(fingerprint `{summary["data_fingerprint"]}`).
Split: leave-one-out by time; {summary["evaluated_users"]:,} users with >= 3 interactions are
evaluated. Test figures below; "full" ranks the held-out item against the whole catalog with
seen items excluded, "sampled100" against 100 random items the user never touched.

{results_table(metrics)}

{_models_table(summary["models"])}

Trained on {summary["device"]} ({summary["world_size"]} process(es)); the whole job took
{summary["wall_seconds"]:.0f} s. MACs / request: multiply-adds to score the catalog for one
user with a full history window.

![training curve](training_curve.png)

![models](models.png)
"""
    path = model_dir / "report.md"
    path.write_text(text)
    return path
