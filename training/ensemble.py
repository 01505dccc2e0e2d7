"""Several teachers trained from different seeds, used as one model.

The ensemble's score for an item is the mean over members of log softmax(logits): a
geometric mean of their next-item distributions. Ranking by it is what evaluation does,
and its softmax (at temperature T) is what the student is distilled towards. For a single
member this equals the member's own logits up to a per-row constant, so nothing changes.
"""

from __future__ import annotations

import torch
from torch import nn

from training.model import SASRec


class TeacherEnsemble(nn.Module):
    def __init__(self, members: list[SASRec]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        configs = {repr(m.cfg) for m in members}
        if len(configs) != 1:
            raise ValueError("ensemble members must share one model configuration")
        self.members = nn.ModuleList(members)  # registered, so .to() and state_dict see them
        self._teachers: list[SASRec] = list(members)  # the same modules, typed
        self.cfg = members[0].cfg

    @torch.no_grad()
    def score(self, items: torch.Tensor) -> torch.Tensor:
        """(B, n_items + 1), column 0 (padding) at -inf, like SASRec.score."""
        logp = [torch.log_softmax(m.score(items).float(), dim=1) for m in self._teachers]
        return torch.stack(logp).mean(0)

    @torch.no_grad()
    def logits_at(self, items: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        logp = [torch.log_softmax(m.logits_at(items, real).float(), dim=1) for m in self._teachers]
        return torch.stack(logp).mean(0)

    @torch.no_grad()
    def candidates_at(self, items, real, y, negatives, log_q) -> torch.Tensor:
        logp = [
            torch.log_softmax(m.candidates_at(items, real, y, negatives, log_q), dim=1)
            for m in self._teachers
        ]
        return torch.stack(logp).mean(0)


def as_teacher(members: list[SASRec]) -> SASRec | TeacherEnsemble:
    """One member stays itself (its raw logits, exactly as before); several become one."""
    return members[0] if len(members) == 1 else TeacherEnsemble(members)
