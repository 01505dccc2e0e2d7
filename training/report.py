"""A short Markdown report with PNG plots, written beside the model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in a training container
import matplotlib.pyplot as plt


def _plot_history(history: list[dict], path: Path) -> None:
    epochs = [r["epoch"] for r in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(epochs, [r["train_loss"] for r in history], color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    evald = [r for r in history if "valid_ndcg@10" in r]
    ax2 = ax1.twinx()
    ax2.plot(
        [r["epoch"] for r in evald],
        [r["valid_ndcg@10"] for r in evald],
        color="tab:orange",
        marker="o",
        markersize=3,
    )
    ax2.set_ylabel("valid NDCG@10 (full ranking)", color="tab:orange")
    ax1.set_title("Teacher training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_models(metrics: dict, path: Path) -> None:
    names = list(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, protocol in zip(axes, ("full", "sampled100"), strict=True):
        values = [metrics[n]["test"].get(protocol, {}).get("ndcg@10", 0.0) for n in names]
        ax.bar(names, values, color=["tab:orange" if n == "teacher" else "tab:gray" for n in names])
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


def write_report(model_dir: Path, metrics: dict, history: list[dict], summary: dict) -> Path:
    _plot_history(history, model_dir / "training_curve.png")
    _plot_models(metrics, model_dir / "models.png")
    data = summary["data"]
    text = f"""# lmrec training report

Data: {data["interactions"]:,} interactions, {data["users"]:,} users, {data["items"]:,} items
(fingerprint `{summary["data_fingerprint"]}`).
Split: leave-one-out by time; {summary["evaluated_users"]:,} users with >= 3 interactions are
evaluated. Test figures below; "full" ranks the held-out item against the whole catalog with
seen items excluded, "sampled100" against 100 random items the user never touched.

{results_table(metrics)}

Teacher: best epoch {summary["best_epoch"]} of {len(history)}, {summary["train_seconds"]:.0f} s
of training on {summary["device"]} ({summary["world_size"]} process(es)).

![training curve](training_curve.png)

![models](models.png)
"""
    path = model_dir / "report.md"
    path.write_text(text)
    return path
