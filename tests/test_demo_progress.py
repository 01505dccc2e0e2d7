"""The demo's progress from a training job's own lines (the SageMaker metric lines)."""

from __future__ import annotations

from lmrec.local.progress import JobProgress

JOB_OUTPUT = [
    "2026-11-30 05:33:43,731 INFO training.pipeline: split: 943 users evaluated\n",
    "epoch=1 train_loss=7.1 lr=0.001 epoch_seconds=20.5 valid_ndcg@10=0.0512 valid_hr@10=0.1\n",
    "epoch=2 train_loss=6.9 lr=0.001 epoch_seconds=20.1 valid_ndcg@10=0.0734 valid_hr@10=0.1\n",
    "2026-11-30 05:34:56,785 INFO training.trainer: teacher: stopping after epoch 2 "
    "(time budget); best epoch 2\n",
    "student_epoch=1 student_train_loss=2.1 student_epoch_seconds=9.9 "
    "student_valid_ndcg@10=0.0601\n",
    "student_epoch=2 student_train_loss=2.0 student_epoch_seconds=9.8 "
    "student_valid_ndcg@10=0.0583\n",
    "student_plain_epoch=1 student_plain_train_loss=6.8 student_plain_epoch_seconds=3.6 "
    "student_plain_valid_ndcg@10=0.0624\n",
    "| model | full HR@10 | full NDCG@10 |\n",
]


def test_one_summary_line_per_model_with_its_epochs_best_and_stop_reason():
    said: list[str] = []
    budgets = {"teacher": 60.0, "student": 35.0, "student_plain": 35.0}
    with JobProgress(budgets, "  ", said.append) as progress:
        for line in JOB_OUTPUT:
            progress.line(line)
    rows = [s.split() for s in said]
    assert [r[0] for r in rows] == ["teacher", "student", "student_plain", "whole"]
    assert said[0].endswith("2 epochs in 0 s, best valid NDCG@10 0.0734, stopped: time budget")
    assert "1 epoch in" in said[2] and "best valid NDCG@10 0.0624" in said[2]
    # the student's best is its best epoch, not its last
    assert "best valid NDCG@10 0.0601" in said[1]


def test_gate_table_marks_the_served_model_and_names_the_sampled_protocol(tmp_path, capsys):
    import json

    from lmrec.local.demo import show_gate

    def block(v):
        return {"ndcg@10": v, "hr@10": 2 * v, "users": 50}

    metrics = {
        n: {"test": {"full": block(v), "sampled50": block(3 * v)}}
        for n, v in (("teacher", 0.05), ("student", 0.04), ("popularity", 0.02))
    }
    metrics["teacher"]["test"]["full"]["ndcg@10_vs_cooccurrence"] = [0.0123, 0.0021, 0.0225]
    (tmp_path / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    decision = {"action": "promoted", "model_version": "v1", "reason": "first model"}
    assert show_gate(decision, tmp_path)
    out = capsys.readouterr().out
    assert "sampled50 NDCG@10" in out and "co-occurrence, paired" in out
    teacher = next(line for line in out.splitlines() if line.split()[:1] == ["teacher"])
    assert teacher.endswith("+0.0123 [+0.0021, +0.0225]*")  # ahead beyond noise: starred
    served = [line for line in out.splitlines() if "(served)" in line]
    assert len(served) == 1 and served[0].split()[:2] == [">", "student"]
    assert "note: teacher rank above the served student" in out  # said when true
    # a job that serves the student trained alone says so in its manifest
    manifest = {"metrics": metrics, "served": {"model": "teacher", "transitions_weight": 0}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    show_gate(decision, tmp_path)
    served = [line for line in capsys.readouterr().out.splitlines() if "(served)" in line]
    assert served[0].split()[:2] == [">", "teacher"]
