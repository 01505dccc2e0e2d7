"""The student's forward pass in numpy: the same SASRec the trainer builds, no torch.

Weights keep torch's state_dict names and (out, in) layout; they are transposed once at load.
The item table stays in the precision the bundle stored (float32, float16, or int8 with one
float32 scale per row): rows are converted when a history looks them up or a request scores
them, so an int8 table costs a quarter of the memory a float32 copy would.

Only what the newest position needs is computed in the last block (its keys and values for
every position, its query, attention output and FFN for the newest one), which is exact for
a causal model and saves most of that block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LN_EPS = 1e-5  # torch.nn.LayerNorm's default
SCORE_CHUNK = 8192  # rows converted to float32 at a time: 1.5 MB at D=48, inside L2
_GELU_C = math.sqrt(2.0 / math.pi)


def dequantize_items(weights: dict[str, np.ndarray]) -> np.ndarray:
    """The item table as float32, whichever way the bundle stored it."""
    table = weights["item_emb.weight"]
    if table.dtype == np.int8:
        return table.astype(np.float32) * weights["item_emb.scale"][:, None]
    return table.astype(np.float32)


def left_pad(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """(B, L) int64, the newest item last, L = min(max_len, longest sequence), zeros in front.
    Shared with the trainer, so serving pads exactly as training did."""
    width = max(1, min(max_len, max((len(s) for s in seqs), default=1)))
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        seq = seq[-width:]
        if len(seq):
            out[row, width - len(seq) :] = seq
    return out


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    return xc / np.sqrt(var + LN_EPS) * w + b


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x * x * x)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x


@dataclass
class _Block:
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    qkv_t: np.ndarray  # (D, 3D)
    qkv_b: np.ndarray
    proj_t: np.ndarray  # (D, D)
    proj_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray
    ffn1_t: np.ndarray  # (D, mD)
    ffn1_b: np.ndarray
    ffn2_t: np.ndarray  # (mD, D)
    ffn2_b: np.ndarray


@dataclass
class Encoded:
    hidden: np.ndarray  # (B, D) the user vectors
    items: np.ndarray  # (B, L) the padded input window


class NumpySASRec:
    def __init__(self, weights: dict[str, np.ndarray], config: dict):
        self.d = int(config["d_model"])
        self.n_heads = int(config["n_heads"])
        self.max_len = int(config["max_len"])
        self.n_items = int(config["n_items"])
        f32 = {
            k: np.ascontiguousarray(v, dtype=np.float32)
            for k, v in weights.items()
            if k != "item_emb.weight" and k != "item_emb.scale"
        }
        table = weights["item_emb.weight"]
        self.table = table if table.dtype == np.int8 else np.ascontiguousarray(table)
        if self.table.dtype not in (np.float32, np.float16, np.int8):
            self.table = self.table.astype(np.float32)
        scale = weights.get("item_emb.scale")
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self.pos = f32["pos_emb.weight"]
        self.blocks = []
        for i in range(int(config["n_blocks"])):
            p = f"blocks.{i}."
            self.blocks.append(
                _Block(
                    f32[p + "ln1.weight"],
                    f32[p + "ln1.bias"],
                    np.ascontiguousarray(f32[p + "attn.qkv.weight"].T),
                    f32[p + "attn.qkv.bias"],
                    np.ascontiguousarray(f32[p + "attn.proj.weight"].T),
                    f32[p + "attn.proj.bias"],
                    f32[p + "ln2.weight"],
                    f32[p + "ln2.bias"],
                    np.ascontiguousarray(f32[p + "ffn.0.weight"].T),
                    f32[p + "ffn.0.bias"],
                    np.ascontiguousarray(f32[p + "ffn.2.weight"].T),
                    f32[p + "ffn.2.bias"],
                )
            )
        self.lnf_w, self.lnf_b = f32["ln_f.weight"], f32["ln_f.bias"]
        if self.table.shape != (self.n_items + 1, self.d):
            raise ValueError(f"item table {self.table.shape} does not match the config")
        if self.table.dtype == np.int8 and (
            self.scale is None or self.scale.shape != (self.n_items + 1,)
        ):
            raise ValueError("an int8 item table needs one scale per row")

    def embed(self, rows: np.ndarray) -> np.ndarray:
        """float32 embeddings of item rows (any shape): (..., D)."""
        out = self.table[rows].astype(np.float32)
        if self.scale is not None:
            out *= self.scale[rows][..., None]
        return out

    def score_rows(self, hidden: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(D,) user vector -> scores of the given rows only (candidates of a request)."""
        if self.table.dtype == np.float32:
            return self.table[rows] @ hidden
        out = self.table[rows].astype(np.float32) @ hidden
        if self.scale is not None:
            out *= self.scale[rows]
        return out

    def item_norms(self) -> np.ndarray:
        """(N + 1,) L2 norm of every row, chunk by chunk (no float32 copy of the table)."""
        out = np.empty(len(self.table), dtype=np.float32)
        for lo in range(0, len(self.table), SCORE_CHUNK):
            out[lo : lo + SCORE_CHUNK] = np.linalg.norm(
                self.table[lo : lo + SCORE_CHUNK].astype(np.float32), axis=1
            )
        if self.scale is not None:
            out *= self.scale
        return out

    def pad(self, histories: list[np.ndarray]) -> np.ndarray:
        return left_pad(histories, self.max_len)

    def _heads(self, t: np.ndarray) -> np.ndarray:  # (B, L, D) -> (B, H, L, D/H)
        B, L, _ = t.shape
        return t.reshape(B, L, self.n_heads, self.d // self.n_heads).transpose(0, 2, 1, 3)

    def encode(self, histories: list[np.ndarray]) -> Encoded:
        items = self.pad(histories)
        B, L = items.shape
        real = items != 0  # (B, L)
        x = self.embed(items) * math.sqrt(self.d) + self.pos[self.max_len - L :]
        x *= real[..., None]
        causal = np.tril(np.ones((L, L), dtype=bool))
        eye = np.eye(L, dtype=bool)
        full_mask = causal & (real[:, None, None, :] | eye)  # (B, 1, L, L)
        scale = 1.0 / math.sqrt(self.d // self.n_heads)
        for i, blk in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            h = layer_norm(x, blk.ln1_w, blk.ln1_b)
            qkv = h @ blk.qkv_t + blk.qkv_b  # (B, L, 3D)
            q, k, v = np.split(qkv, 3, axis=-1)
            if last:  # only the newest position's query matters from here on
                q, mask = q[:, -1:], full_mask[:, :, -1:, :]
                x = x[:, -1:]
            else:
                mask = full_mask
            q, k, v = self._heads(q), self._heads(k), self._heads(v)
            att = softmax(np.where(mask, (q @ k.transpose(0, 1, 3, 2)) * scale, -np.inf))
            y = (att @ v).transpose(0, 2, 1, 3).reshape(B, -1, self.d)  # (B, Lq, D)
            x = x + y @ blk.proj_t + blk.proj_b
            f = gelu_tanh(layer_norm(x, blk.ln2_w, blk.ln2_b) @ blk.ffn1_t + blk.ffn1_b)
            x = x + f @ blk.ffn2_t + blk.ffn2_b
        hidden = layer_norm(x[:, -1], self.lnf_w, self.lnf_b)
        return Encoded(hidden=hidden, items=items)

    def score(self, hidden: np.ndarray) -> np.ndarray:
        """(B, D) -> (B, N + 1) scores; column 0 (padding) is -inf. A float32 table is one
        BLAS call on its transposed view (no copy); a float16/int8 one is converted a chunk at
        a time and each row's scale applied to its scores."""
        if self.table.dtype == np.float32:
            scores = hidden @ self.table.T
        else:
            scores = np.empty((len(hidden), len(self.table)), dtype=np.float32)
            for lo in range(0, len(self.table), SCORE_CHUNK):
                block = self.table[lo : lo + SCORE_CHUNK].astype(np.float32)
                scores[:, lo : lo + SCORE_CHUNK] = hidden @ block.T
            if self.scale is not None:
                scores *= self.scale
        scores[:, 0] = -np.inf
        return scores

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return self.score(self.encode(histories).hidden)

    def macs_per_request(self, history_len: int) -> int:
        ffn_mult = self.blocks[0].ffn1_t.shape[1] // self.d
        return sasrec_macs(
            self.d, len(self.blocks), ffn_mult, self.n_items, self.max_len, history_len
        )


def sasrec_macs(
    d: int, n_blocks: int, ffn_mult: int, n_items: int, max_len: int, history_len: int
) -> int:
    """Multiply-adds to score the catalog for one user with `history_len` items.

    Counted as this runtime runs it: every block but the last on all L positions; the last
    block with keys/values for all L but query, attention output and FFN for the newest
    position only; then one (D x N) product over the catalog. Layer norms, softmax and
    biases are left out (O(L*D)). Shared with the trainer, so teacher and student are
    counted by one rule.
    """
    L = min(history_len, max_len)
    full_block = L * (4 * d * d + 2 * ffn_mult * d * d) + 2 * L * L * d  # qkv+out, ffn, attn
    last_block = 2 * L * d * d + (2 * d * d + 2 * ffn_mult * d * d) + 2 * L * d
    return (n_blocks - 1) * full_block + last_block + n_items * d
