"""Knowledge distillation: a small SASRec student learns from the teacher's distribution.

Loss per real position = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))
                       + (1 - alpha) * CE(student, true next item)      (Hinton et al., 2015)
With `topk` > 0 only the teacher's K highest logits (renormalised) are matched, for catalogs
too large to hold the full (positions x catalog) teacher distribution.

The teacher may be an ensemble (training/ensemble.py): its mean log-softmax then stands in
for the logits. The teacher reads its own, longer context; the student reads the newest
`student_max_len` items of the same batch, exactly what it will see when serving.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import StudentConfig
from training.ensemble import TeacherEnsemble
from training.model import SASRec


class Distiller(nn.Module):
    def __init__(self, student: SASRec, teacher: SASRec | TeacherEnsemble, cfg: StudentConfig):
        super().__init__()
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha, self.temperature, self.topk = (
            cfg.distill_alpha,
            cfg.distill_temperature,
            cfg.distill_topk,
        )

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # the teacher's dropout stays off: its targets must be deterministic
        return self

    def forward(
        self, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> torch.Tensor:
        width = self.student.cfg.max_len
        s_items, s_targets = items[:, -width:], targets[:, -width:]
        real = s_targets != 0
        s_logits = self.student.catalog_logits(self.student.encode(s_items)[real]).float()
        y = s_targets[real] - 1  # catalog column of the true next item
        ce = F.cross_entropy(s_logits, y)
        if self.alpha == 0.0:
            return ce
        with torch.no_grad():
            t_logits = self.teacher.logits_at(items, real).float()  # (N, n_items)
        T = self.temperature
        if self.topk:
            t_logits, cols = t_logits.topk(min(self.topk, t_logits.shape[1]), dim=1)
            s_logits = s_logits.gather(1, cols)
        kl = F.kl_div(
            F.log_softmax(s_logits / T, dim=1),
            F.log_softmax(t_logits / T, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        return self.alpha * T * T * kl + (1.0 - self.alpha) * ce


@torch.no_grad()
def init_from_teacher(student: SASRec, teacher: SASRec) -> None:
    """Item and position embeddings projected onto the teacher's top principal directions.

    Item similarity in the teacher is kept as well as a d_s-dimensional linear map can keep
    it, at the teacher's scale, so the student starts from the teacher's item geometry.
    """
    d_s = student.cfg.d_model
    items = teacher.item_emb.weight[1:].float()  # (n_items, Dt); row 0 is padding
    mean = items.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(items - mean, full_matrices=False)  # v: (Dt, Dt)
    basis = v[: min(d_s, v.shape[0])].T  # (Dt, <= Ds)
    student.item_emb.weight[1:, : basis.shape[1]] = (items - mean) @ basis
    pos = teacher.pos_emb.weight[-student.cfg.max_len :].float()  # the newest positions
    if pos.shape[0] == student.cfg.max_len:
        student.pos_emb.weight[:, : basis.shape[1]] = (pos - pos.mean(0, keepdim=True)) @ basis
