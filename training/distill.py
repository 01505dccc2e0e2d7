"""Knowledge distillation: a small SASRec student learns from the teacher's distribution.

Loss per real position = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))
                       + (1 - alpha) * CE(student, true next item)      (Hinton et al., 2015)

Over what: with the full softmax (small catalogs) the teacher's whole distribution over the
catalog. With sampled negatives (large catalogs) the two distributions are compared on the
step's candidate set only, [target, shared negatives], both corrected by log q as the
sampled softmax is: memory and work are positions x candidates, never positions x catalog,
and the student's item table gets gradients on those rows only (sparse).

Why not the teacher's own top-K as extra candidates: finding it means scoring every position of
the step against the whole catalog (chunked, so memory stays small, but the work does not).
Measured side by side on this project's 2-core machine, one thread, 1,152 positions per step
(`python benchmarks/distill_topk_cost.py`, benchmarks/results/distill-topk-cost-2026-11-30.json):
with the chunked top-100 pass a step costs 8.6x the distillation step alone at 75k items and
92x at 671k - positions x catalog, the very cost the sampled loss exists to avoid.

The teacher may be an ensemble (training/ensemble.py): its mean log-softmax then stands in
for the logits. The teacher reads its own, longer context; the student reads the newest
`student_max_len` items of the same batch, exactly what it will see when serving.

What is distilled is the teacher as it is used: with a transition table at the teacher's
weight (`boost`, lmrec.transitions, chosen on valid before the students train), the target is
teacher logits + weight * log(1 + recent transition counts), the product of experts the job
evaluates as "teacher+transitions". The counts' knowledge then lands in the student's
weights, and the student's own transition weight is chosen afterwards, from 0 up.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from lmrec.transitions import Transitions
from torch import nn

from training.config import StudentConfig
from training.ensemble import TeacherEnsemble
from training.model import SASRec, candidate_logits


class _SoftKL(torch.autograd.Function):
    """KL(p || softmax(s)) per row, mean over rows, for a fixed p (the teacher's): forward is
    one log-softmax of s; backward is (softmax(s) - p) / N, which holds because each row of p
    sums to 1. A masked column (-inf in both: the sampled loss's accidental hits) has p = 0
    and adds nothing. Against autograd through cross_entropy with probability targets and a
    separate entropy (`python benchmarks/distill_kl_cost.py`, one thread, quiet 2-core AMD
    EPYC): the KL 38 ms instead of 79 (1,280 positions x 2,049 candidates) and 40 instead of 96
    (1,664 x 1,682 items); a whole distillation step 0.79x and 0.74x (0.85x / 0.71x the next
    minute: the ratios move a few hundredths from run to run)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, p: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        ls = torch.log_softmax(s, dim=1)
        terms = torch.sub(log_p, ls).mul_(p)  # in place: one N x K temporary, not three
        # -inf - -inf is NaN at a masked column, whose weight p is 0; only there: a NaN from
        # a diverged student or teacher must still surface in the loss
        terms.masked_fill_(p == 0, 0.0)
        ctx.save_for_backward(ls, p)
        return terms.sum() / s.shape[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ls, p = ctx.saved_tensors
        return ls.exp_().sub_(p).mul_(grad / ls.shape[0]), None, None


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """KL(teacher_T || student_T), mean over positions; the logits may hold -inf at the
    same columns in both (masked candidates)."""
    s, t = student_logits, teacher_logits
    if T != 1.0:
        s, t = s / T, t / T
    with torch.no_grad():
        log_p = F.log_softmax(t, dim=1)
    return _SoftKL.apply(s, log_p.exp(), log_p)


def position_windows(items: torch.Tensor, real: torch.Tensor, recent: int) -> np.ndarray:
    """(N, recent): the newest `recent` items up to and including each real position (the
    last real.shape[1] columns of `items`), newest last, 0 before a sequence starts."""
    padded = F.pad(items, (recent - 1, 0))
    windows = padded.unfold(1, recent, 1)  # (B, L, recent): the window ending at each column
    return windows[:, -real.shape[1] :][real].cpu().numpy()


class Boost:
    """A transition table's boost at every real position of a training batch, as serving
    computes it for that position's history (lmrec.transitions): weight * log(1 + sums),
    sums = W @ C with W (positions x items) holding decay**age at each position's `recent`
    newest items and C the count table. One sparse product in scipy per step: its work is the
    boosted (position, item) entries, never positions x catalog."""

    def __init__(self, table: Transitions):
        self.table = table
        n = table.n_items + 1
        self.counts = sp.csr_matrix(
            (table.counts.astype(np.float64), table.cols, table.indptr), shape=(n, n)
        )

    def entries(self, items: torch.Tensor, real: torch.Tensor) -> sp.coo_matrix:
        """(positions x items) boosts, one entry per boosted (position, item)."""
        t = self.table
        windows = position_windows(items, real, t.recent)[:, ::-1]  # newest first: age 0
        n, width = windows.shape
        ages = np.broadcast_to(t.decay ** np.arange(width, dtype=np.float64), windows.shape)
        rows = np.broadcast_to(np.arange(n)[:, None], windows.shape)
        w = sp.csr_matrix(
            (ages.ravel(), (rows.ravel(), windows.ravel())), shape=(n, self.counts.shape[0])
        )
        sums = (w @ self.counts).tocoo()
        sums.data = (t.weight * np.log1p(sums.data)).astype(np.float32)
        return sums

    def add(
        self,
        logits: torch.Tensor,
        items: torch.Tensor,
        real: torch.Tensor,
        candidates: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Teacher logits plus the boost: over the catalog (column j is item j + 1), or over
        the columns [target, negatives] of the sampled loss, `candidates` = (targets (N,),
        negatives (K,))."""
        boost = self.entries(items, real)
        device = logits.device
        rows_t = torch.from_numpy(boost.row.astype(np.int64)).to(device)
        cols_t = torch.from_numpy(boost.col.astype(np.int64)).to(device)
        values = torch.from_numpy(boost.data).to(logits)
        out = logits.clone()
        if candidates is None:
            out[rows_t, cols_t - 1] += values  # one entry per (row, item): no repeated index
            return out
        y, negatives = candidates
        at_target = cols_t == y[rows_t]
        out[rows_t[at_target], 0] += values[at_target]
        # Negatives are drawn with replacement: an item may fill several columns, each boosted.
        order = torch.argsort(negatives)
        lo = torch.searchsorted(negatives[order], cols_t)
        count = torch.searchsorted(negatives[order], cols_t, right=True) - lo
        first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        offset = torch.arange(int(count.sum()), device=device) - first
        column = 1 + order[torch.repeat_interleave(lo, count) + offset]
        out[torch.repeat_interleave(rows_t, count), column] += torch.repeat_interleave(
            values, count
        )
        return out


class Distiller(nn.Module):
    def __init__(
        self,
        student: SASRec,
        teacher: SASRec | TeacherEnsemble,
        cfg: StudentConfig,
        boost: Transitions | None = None,
    ):
        super().__init__()
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.alpha, self.temperature = cfg.distill_alpha, cfg.distill_temperature
        self.boost = Boost(boost) if boost is not None else None

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # the teacher's dropout stays off: its targets must be deterministic
        return self

    def forward(
        self,
        items: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor | None = None,
        log_q: torch.Tensor | None = None,
    ) -> torch.Tensor:
        width = self.student.cfg.max_len
        s_items, s_targets = items[:, -width:], targets[:, -width:]
        real = s_targets != 0
        y = s_targets[real]
        if negatives is None:
            s_logits = self.student.catalog_logits(self.student.encode(s_items)[real]).float()
            ce = F.cross_entropy(s_logits, y - 1)  # column of the true next item
        else:
            h, pos_vec, neg_vec, _ = self.student.sampled_vectors(s_items, real, y, negatives)
            s_logits = candidate_logits(h, pos_vec, neg_vec, y, negatives, log_q)
            ce = (torch.logsumexp(s_logits, dim=1) - s_logits[:, 0]).mean()
        if self.alpha == 0.0:
            return ce
        with torch.no_grad():
            if negatives is None:
                t_logits = self.teacher.logits_at(items, real).float()  # (N, n_items)
            else:
                t_logits = self.teacher.candidates_at(items, real, y, negatives, log_q)
            if self.boost is not None:
                candidates = None if negatives is None else (y, negatives)
                t_logits = self.boost.add(t_logits, items, real, candidates)
        T = self.temperature
        kl = _kl(s_logits, t_logits, T)
        return self.alpha * T * T * kl + (1.0 - self.alpha) * ce


@torch.no_grad()
def init_from_teacher(student: SASRec, teacher: SASRec) -> None:
    """Item and position embeddings projected onto the teacher's top principal directions.

    Item similarity in the teacher is kept as well as a d_s-dimensional linear map can keep
    it, at the teacher's scale, so the student starts from the teacher's item geometry.
    """
    d_s = student.cfg.d_model
    was_training = teacher.training
    teacher.eval()  # the whole item vectors (with content: id + content), no id dropout
    items = teacher.item_table()[1:].float()  # (n_items, Dt); row 0 is padding
    teacher.train(was_training)
    mean = items.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(items - mean, full_matrices=False)  # v: (Dt, Dt)
    basis = v[: min(d_s, v.shape[0])].T  # (Dt, <= Ds)
    student.item_emb.weight[1:, : basis.shape[1]] = (items - mean) @ basis
    pos = teacher.pos_emb.weight[-student.cfg.max_len :].float()  # the newest positions
    if pos.shape[0] == student.cfg.max_len:
        student.pos_emb.weight[:, : basis.shape[1]] = (pos - pos.mean(0, keepdim=True)) @ basis
