"""SASRec-style causal Transformer over item sequences (the teacher).

Kang & McAuley (ICDM'18) architecture, trained with a softmax over the catalog as in
Klenitskiy & Vasilev (RecSys'23). Item embeddings are tied with the output layer, so a
user's score for item j is <h_last, E_j>.

Sequences are left-padded with item 0. Positions count back from the newest item, so a
batch padded to its own longest sequence sees the same positions as one padded to max_len.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from lmrec.student import sasrec_macs
from torch import nn

from training.config import ModelConfig
from training.dropout import Dropout, attention

if TYPE_CHECKING:
    from training.item_content import ItemContent


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, 1, D) for the newest query alone with `last_only`."""
        B, _, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        if last_only:
            q, mask = q[:, -1:], mask[:, :, -1:]
        # (B, H, Lq, D/H)
        q, k, v = (
            t.reshape(B, -1, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v)
        )
        y = attention(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, -1, D))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ffn_mult * cfg.d_model),
            nn.GELU(approximate="tanh"),  # numpy has no erf; serving matches this
            nn.Linear(cfg.ffn_mult * cfg.d_model, cfg.d_model),
            Dropout(cfg.dropout),
        )
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        if last_only:  # keys and values from every position, the rest for the newest only
            x = x[:, -1:] + self.drop(self.attn(self.ln1(x), mask, last_only=True))
        else:
            x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.ffn(self.ln2(x))


def candidate_logits(
    h: torch.Tensor,
    pos_vec: torch.Tensor,
    neg_vec: torch.Tensor,
    y: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor | None,
) -> torch.Tensor:
    """(N, 1 + K) float32 logits of [target, shared negatives], minus log q (the sampled
    softmax's correction, Bengio & Senecal 2008; Yi et al. 2019), with a negative that is the
    row's own target (an accidental hit) at -inf."""
    pos = (h * pos_vec).sum(-1, keepdim=True).float()  # (N, 1)
    neg = (h @ neg_vec.T).float()  # (N, K)
    if log_q is not None:
        pos = pos - log_q[y][:, None]
        neg = neg - log_q[negatives][None, :]
    neg = neg.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
    return torch.cat([pos, neg], dim=1)


def _copies(negatives: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """How many times each of `ids` was drawn among the shared negatives (float, ids' shape)."""
    ordered = torch.sort(negatives).values
    hi = torch.searchsorted(ordered, ids, right=True)
    return (hi - torch.searchsorted(ordered, ids)).float()


def _per_positive_nll(
    logits: torch.Tensor,
    y: torch.Tensor,
    negatives: torch.Tensor,
    s: torch.Tensor,
    nxt: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled softmax each positive would have as the only target: the target's (N,)
    from candidate_logits' block (its own draws among the negatives already at -inf), and
    each soft target's (N, W) from its logit `s` against the same negatives less its own
    draws, lse_j = log(sum over all negatives - c_j exp(s_j)), where the sum over all adds
    the target's draws back; no (N, W, K) block."""
    pos = logits[:, :1]
    lse_neg = torch.logsumexp(logits[:, 1:], dim=1, keepdim=True)  # target's draws out
    nll = (torch.logaddexp(pos, lse_neg) - pos)[:, 0]
    lse_all = torch.logaddexp(lse_neg, pos + torch.log(_copies(negatives, y))[:, None])
    drawn = _copies(negatives, nxt) * torch.exp(s - lse_all)  # in [0, 1]: their share
    lse = lse_all + torch.log1p(-drawn.clamp(max=1 - 1e-6))
    return nll, torch.logaddexp(s, lse) - s


def _mix(nll: torch.Tensor, soft_nll: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean over positions of (1 - sum w) * nll + sum_j w_j * soft_nll_j: nll (N,), soft_nll
    and w (N, W); a position whose input item has no soft targets keeps its plain loss."""
    return ((1 - w.sum(1)) * nll + (w * soft_nll).sum(1)).mean()


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) bool: causal, and padding keys hidden. Each position may always see itself,
    so rows of padding queries are never all-masked (which would give NaN)."""
    L = items.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
    keys = (items != 0)[:, None, None, :]  # (B, 1, 1, L)
    eye = torch.eye(L, dtype=torch.bool, device=items.device)
    return causal & (keys | eye)


class SASRec(nn.Module):
    """With `content` (training/item_content.py) an item's vector is its id row plus the
    weighted sum of its content rows, rep(i) = id(i) * keep + content(i), where keep is 0
    with probability content.id_dropout per occurrence in training: the content part alone
    must then place an item, as it does for an item added after training."""

    content: nn.EmbeddingBag | None
    _content_indices: torch.Tensor  # buffers, present with content only
    _content_offsets: torch.Tensor
    _content_weights: torch.Tensor
    _id_keep: torch.Tensor | None  # (n_items + 1, 1): 0 for the items placed by content alone
    _next_items: torch.Tensor | None  # (n_items + 1, W): soft targets (set_soft_targets)
    _next_weights: torch.Tensor | None

    def __init__(self, cfg: ModelConfig, content: ItemContent | None = None):
        super().__init__()
        if cfg.n_items <= 0:
            raise ValueError("ModelConfig.n_items must be set from the data")
        if cfg.d_model <= 0:
            raise ValueError("ModelConfig.d_model must be set (training.plan.adapt chooses it)")
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.emb_drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.content = None
        self._table_cache: tuple[tuple, torch.Tensor] | None = None
        self.register_buffer("_id_keep", None, persistent=False)  # set by _attach
        self.id_dropout = 0.0
        self.register_buffer("_next_items", None, persistent=False)
        self.register_buffer("_next_weights", None, persistent=False)
        self.soft_share = 0.0
        if content is not None:
            self._attach(content)
        self.apply(self._init)

    def _attach(self, content: ItemContent) -> None:
        f = content.features
        if len(f) != self.cfg.n_items + 1:
            raise ValueError(f"content features for {len(f)} rows, the model has n_items + 1")
        self.content = nn.EmbeddingBag(content.spec.n_buckets, self.cfg.d_model, mode="sum")
        self.id_dropout = content.id_dropout
        # Derived from the catalog at every start, so not part of a checkpoint.
        for name, array in (("indices", f.indices), ("offsets", f.offsets)):
            self.register_buffer(f"_content_{name}", torch.from_numpy(array), persistent=False)
        self.register_buffer("_content_weights", torch.from_numpy(f.weights), persistent=False)
        keep = None
        if content.trained is not None and not content.trained[1:].all():
            keep = torch.from_numpy(content.trained).to(torch.float32)[:, None]
        self._id_keep = keep

    def set_soft_targets(
        self, items: torch.Tensor | None, weights: torch.Tensor | None, share: float
    ) -> None:
        """Train toward (1 - share) on the next item plus `share` spread over `items[i]` by
        `weights[i]`, where i is the input item (training/count_targets.py); None, None, 0
        drops the table (after training: at 651k items it is 119 MiB per model). Derived
        from the split at every start, so not part of a checkpoint or an export."""
        device = self.item_emb.weight.device
        self._next_items = None if items is None else items.to(device)
        self._next_weights = None if weights is None else weights.to(device)
        self.soft_share = share

    def _soft(
        self, items: torch.Tensor, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The input items' soft targets at the real positions: ((N, W) ids, (N, W) weights
        times the share), or None when off. `items` are the clean inputs (before any
        input_noise: the counts say what follows the item the user had)."""
        if self._next_items is None or self._next_weights is None or self.soft_share <= 0:
            return None
        src = items[:, -real.shape[1] :][real]
        return self._next_items[src], self._next_weights[src] * self.soft_share

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.EmbeddingBag):
            nn.init.trunc_normal_(module.weight, std=0.02)
        elif isinstance(module, nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def _content_of(self, ids: torch.Tensor) -> torch.Tensor:
        """(*ids.shape, D): the content part of each id (zeros for padding)."""
        assert self.content is not None
        flat = ids.reshape(-1)
        start = self._content_offsets[flat]
        length = self._content_offsets[flat + 1] - start
        bag = torch.cumsum(length, 0) - length
        total = int(length.sum())
        at = torch.arange(total, device=ids.device) + torch.repeat_interleave(start - bag, length)
        out = self.content(
            self._content_indices[at], bag, per_sample_weights=self._content_weights[at]
        )
        return out.view(*ids.shape, -1)

    def _keep(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return (torch.rand(shape, device=device) >= self.id_dropout).unsqueeze(-1)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """(*ids.shape, D): the items' vectors, as input embeddings and output scorers."""
        vectors = self.item_emb(ids)
        if self.content is None:
            return vectors
        if self._id_keep is not None:  # items no training row holds: content alone
            vectors = vectors * self._id_keep[ids]
        if self.training and self.id_dropout > 0:
            vectors = vectors * self._keep(tuple(ids.shape), ids.device)
        return vectors + self._content_of(ids)

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, D): every item's vector (row 0 padding); in training, the id part of
        each row dropped with probability id_dropout, once per step. Outside training it is
        computed once per weight update (the catalog's content bags are the work)."""
        weight = self.item_emb.weight
        if self.content is None:
            return weight
        table = weight if self._id_keep is None else weight * self._id_keep
        if self.training or torch.is_grad_enabled():
            if self.training and self.id_dropout > 0:
                table = table * self._keep((table.shape[0],), table.device)
            f = self._content_offsets
            return table + self.content(
                self._content_indices, f[:-1], per_sample_weights=self._content_weights
            )
        key = (weight._version, self.content.weight._version, weight.data_ptr(), weight.device)
        if self._table_cache is None or self._table_cache[0] != key:
            f = self._content_offsets
            full = table + self.content(
                self._content_indices, f[:-1], per_sample_weights=self._content_weights
            )
            self._table_cache = (key, full)
        return self._table_cache[1]

    def encode(
        self,
        items: torch.Tensor,
        item_vectors: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """items (B, L) left-padded -> hidden states (B, L, D); with `last_only`, (B, 1, D)
        for the newest position: the last block then skips every other query, as serving
        does (lmrec.student), which halves a 2-block model's scoring work. `item_vectors`
        (B, L, D): the items' embeddings when the caller has looked them up already."""
        if self.cfg.max_len < items.shape[1]:
            items = items[:, -self.cfg.max_len :]
            if item_vectors is not None:
                item_vectors = item_vectors[:, -self.cfg.max_len :]
        if item_vectors is None:
            item_vectors = self.item_vectors(items)
        L = items.shape[1]
        # Position max_len-1 is the newest item, whatever the padded length of this batch.
        pos = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=items.device)
        x = item_vectors * math.sqrt(self.cfg.d_model) + self.pos_emb(pos)[None]
        x = self.emb_drop(x) * (items != 0).unsqueeze(-1)
        mask = attention_mask(items)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last_only=last_only and i == len(self.blocks) - 1)
        return self.ln_f(x)

    def catalog_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, n_items): column j is item j + 1. Padding (row 0) is left out rather
        than masked, which saves a fill and a copy of the largest tensor in training."""
        return hidden @ self.item_table()[1:].T

    def logits_at(self, items: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Catalog logits (N, n_items) at the positions `real` (B, W) marks among the newest
        W columns of `items`; a distillation target."""
        return self.catalog_logits(self.encode(items)[:, -real.shape[1] :][real])

    @torch.no_grad()
    def candidates_at(
        self,
        items: torch.Tensor,
        real: torch.Tensor,
        y: torch.Tensor,
        negatives: torch.Tensor,
        log_q: torch.Tensor | None,
    ) -> torch.Tensor:
        """Like logits_at, over [target, negatives] only (see candidate_logits): (N, 1 + K)."""
        h = self.encode(items)[:, -real.shape[1] :][real]
        pos_vec, neg_vec = self.item_vectors(y), self.item_vectors(negatives)
        return candidate_logits(h, pos_vec, neg_vec, y, negatives, log_q)

    def forward(
        self,
        items: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor | None = None,
        log_q: torch.Tensor | None = None,
        clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss. items, targets: (B, L) with 0 where there is no target.

        Without `negatives`: the softmax over the whole catalog. Only real positions are
        projected onto the catalog: in Games the mean history is ~7 items in a 50-item
        window, so this skips most of the (N, n_items) matmul.
        With `negatives` (K,): a sampled softmax over [target, negatives], corrected by
        `log_q` (n_items + 1,), the log-probability each item had of being drawn (see
        training/sampling.py); None means a uniform draw, whose correction is a constant.
        With soft targets (set_soft_targets), each position's loss is the mix `_mix` of
        the target's and the input item's successors' losses; `clean`: the inputs before
        input_noise replaced some (default `items`), which the successors are read from.
        """
        real = targets != 0
        y = targets[real]  # (N,)
        soft = self._soft(items if clean is None else clean, real)
        if negatives is None:
            logits = self.catalog_logits(self.encode(items)[real]).float()
            if soft is None:
                return F.cross_entropy(logits, y - 1)
            logp = F.log_softmax(logits, dim=1)
            nll = -logp.gather(1, (y - 1)[:, None])[:, 0]
            nxt, w = soft  # padding ids carry weight 0; clamp keeps their gather in range
            return _mix(nll, -logp.gather(1, (nxt - 1).clamp(min=0)), w)
        extra = None if soft is None else soft[0]
        h, pos_vec, neg_vec, nxt_vec = self.sampled_vectors(items, real, y, negatives, extra)
        logits = candidate_logits(h, pos_vec, neg_vec, y, negatives, log_q)
        if soft is None:
            return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()
        nxt, w = soft
        s = torch.einsum("nd,nwd->nw", h, nxt_vec).float()
        if log_q is not None:
            s = s - log_q[nxt]
        return _mix(*_per_positive_nll(logits, y, negatives, s, nxt), w)

    def sampled_vectors(
        self,
        items: torch.Tensor,
        real: torch.Tensor,
        y: torch.Tensor,
        negatives: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Hidden states at the real positions (N, D), the targets' vectors (N, D), the
        negatives' (K, D) and `extra` ids' (N, W, D) or None, from ONE lookup: with a sparse
        item table its gradient then touches only these rows; with a dense one, on a CPU,
        each lookup's backward fills a gradient the size of the table, so one, not four."""
        width = real.shape[1]
        items = items[:, -width:]
        n_in, n_y, n_neg = items.numel(), len(y), len(negatives)
        ids = [items.reshape(-1), y, negatives] + ([] if extra is None else [extra.reshape(-1)])
        vectors = self.item_vectors(torch.cat(ids))
        h = self.encode(items, vectors[:n_in].view(*items.shape, -1))[real]
        at = n_in + n_y + n_neg
        more = None if extra is None else vectors[at:].view(*extra.shape, -1)
        return h, vectors[n_in : n_in + n_y], vectors[n_in + n_y : at], more

    @torch.no_grad()
    def score(self, items: torch.Tensor) -> torch.Tensor:
        """Serving/eval: scores over the catalog for the next item, (B, n_items + 1), with
        column 0 (padding) at -inf. One matmul against the whole table, padding row included,
        then a fill: no copy of the (B, n_items) block."""
        scores = self.encode(items, last_only=True)[:, -1] @ self.item_table().T
        scores[:, 0] = float("-inf")
        return scores

    def macs_per_request(self, history_len: int) -> int:
        """Multiply-adds per request, by the rule of lmrec.student.sasrec_macs."""
        c = self.cfg
        return sasrec_macs(c.d_model, c.n_blocks, c.ffn_mult, c.n_items, c.max_len, history_len)
