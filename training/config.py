"""Run configuration: one dataclass per concern, parsed from SageMaker's all-string hyperparameters.

SageMaker passes every hyperparameter as a string (hyperparameters.json), so each field's type
annotation drives the conversion, and an unknown key or a bad value fails fast with one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

# `lmrec train --quick`: max_total_seconds for a first look (training/plan.py shares it out).
from lmrec.local.cli import QUICK_SECONDS  # noqa: F401  (re-exported for training)


class ConfigError(ValueError):
    """A hyperparameter that is unknown or cannot be converted."""


def hp(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: tuple[str, ...] = (),
    identity: bool = True,
) -> Any:
    """A hyperparameter with its allowed range (or choices), checked by `validate`.
    identity=False: it does not change the weights a phase produces (how long, how often
    evaluated, what is exported, how many processes), so a checkpoint resumes across a
    change of it (not_identity(), training/pipeline.py)."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": choices}
    meta["identity"] = identity
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    user_col: str = hp("user_id")
    item_col: str = hp("item_id")
    time_col: str = hp("timestamp")
    # Items kept only for users with at least this many interactions (after dedupe).
    min_user_interactions: int = hp(1, 1)  # [1, inf)
    # Optional: keep only these event types (comma separated) when an event_type column exists.
    event_types: str = hp("")
    # Repeated (user, item) rows: "drop" keeps each pair's first row (a shop: seen items are
    # never recommended), "keep" learns from the whole sequence (music, news, groceries:
    # targets may be items already in the history), "auto" keeps them when they are at
    # least training.data.REPEATS_AUTO_SHARE of the rows (the job prints its choice).
    repeats: str = hp("auto", choices=("auto", "keep", "drop"))
    # Evaluation split: "loo" (leave-one-out by time, per user) or "time" (train on all
    # interactions before a valid cut-off chosen from the data; valid and test are each a
    # user's first interaction after their own cut-off: training/split.py).
    split: str = hp("loo", choices=("loo", "time"))
    # Rows of one user that share a timestamp, in training: "file" keeps the file's order
    # (a shop's invoice lines as they were added), "shuffle" puts them in a fresh random
    # order each epoch (an order the export made up), "auto" = file when most rows tie
    # (basket timestamps) and are not listed by item id, else shuffle (training/ties.py;
    # the job prints its choice).
    tie_order: str = hp("auto", choices=("auto", "shuffle", "file"))
    # Catalog column whose '|'-separated values the API filters on ("" = genres/category).
    category_column: str = hp("", identity=False)
    # Amazon Personalize's floor for a trainable data set.
    min_interactions: int = hp(1000, 0, identity=False)  # [0, inf)
    min_users: int = hp(25, 0, identity=False)  # [0, inf)
    # Item content in the model (training/item_content.py): "auto" = on when the catalog has
    # a usable column. Off, or without a catalog, the job trains exactly as it did before.
    content: str = hp("auto", choices=("auto", "on", "off"))
    # Column kinds overriding the inferred ones: "title:text,genres:categorical,year:skip"
    # (kinds: text, categorical, numeric, skip).
    content_columns: str = hp("")
    # [1, inf): rows of the hashed content table (its size does not grow with the catalog).
    content_buckets: int = hp(1 << 15, 1)
    # [0, 1): per item occurrence in training, the id part is dropped with this probability,
    # so the content part alone has to place an item (an item new to the model has only it).
    content_id_dropout: float = hp(0.3, 0.0, 1.0, hi_open=True)
    # Which models read the content: "all" (the teacher too, so what it teaches the students
    # already knows the catalog) or "student" (the served ones only; the teacher learns ids
    # and teaches through its scores). "all" since the students' validation was fixed
    # (docs/experiments.md, "Content in the teacher, measured again"): served test NDCG@10
    # paired, all - student, Online Retail +0.0063 and +0.0077 (two seeds, beyond noise),
    # MovieLens 100K +0.0108 and +0.0001, ml-latest-small +0.0004; the teacher alone gains on
    # Online Retail (0.061 -> 0.124) and ml-latest-small and loses on MovieLens 100K (0.1116
    # -> 0.0976, 0.1042 -> 0.0982), where the content table costs it two of ten epochs.
    content_models: str = hp("all", choices=("student", "all"))


@dataclass
class ModelConfig:
    """SASRec-style causal Transformer; saved inside every checkpoint and export."""

    n_items: int = hp(0)  # catalog size, set from the data (row 0 is padding)
    # [0, inf), a multiple of n_heads; 0 = chosen from the loss (training/plan.py)
    d_model: int = hp(0, 0)
    n_blocks: int = hp(2, 1)  # [1, inf)
    n_heads: int = hp(2, 1)  # [1, inf)
    max_len: int = hp(50, 2)  # [2, inf)
    dropout: float = hp(0.2, 0.0, 1.0, hi_open=True)  # [0, 1)
    ffn_mult: int = hp(4, 1)  # [1, inf)


@dataclass
class TrainConfig:
    # Epochs, batch and patience: 0 = chosen from the data's size (training/plan.py).
    epochs: int = hp(0, 0, identity=False)  # [0, inf)
    batch_size: int = hp(0, 0)  # [0, inf)
    lr: float = hp(1e-3, 0.0, lo_open=True)  # (0, inf)
    weight_decay: float = hp(0.0, 0.0)  # [0, inf)
    # "full" softmax over the catalog, "sampled" (shared negatives, logQ-corrected), or
    # "auto": full up to training.sampling.FULL_SOFTMAX_MAX_ITEMS items, sampled above.
    loss: str = hp("auto", choices=("auto", "full", "sampled"))
    num_negatives: int = hp(2048, 1)  # [1, inf), clamped to the catalog with a warning
    # [0, inf): epochs without a better valid NDCG@10; 0 = auto
    patience: int = hp(0, 0, identity=False)
    eval_every: int = hp(1, 1, identity=False)  # [1, inf)
    seed: int = hp(42, 0, 2**32 - 1)  # numpy and torch seeds are derived from it
    # Teacher wall-clock budget in seconds (0 = none); stops after the epoch that crosses it.
    max_train_seconds: float = hp(0.0, 0.0, identity=False)  # [0, inf)
    # The whole job's budget in seconds: teachers, students, evaluation and export each get a
    # share (training/plan.py), so the job ends with a bundle before a hard kill such as
    # SageMaker's StoppingCondition.MaxRuntimeInSeconds. Left unset, a time goal from the
    # data's size (plan.time_goal), epochs set or not; set to 0 explicitly, none.
    max_total_seconds: float = hp(0.0, 0.0, identity=False)  # [0, inf)
    # (0, 0.5]: the part of max_total_seconds the teachers get; what it leaves goes to the
    # distilled student, which ends at 70% whatever it is (training/plan.py SHARES).
    teacher_share: float = hp(0.4, 0.0, 0.5, lo_open=True, identity=False)
    eval_batch_size: int = hp(512, 1, identity=False)  # [1, inf)
    # Users evaluated: a fixed seeded sample of this many when there are more (0 = all).
    # 10,000 is what SASRec's reference code scores.
    eval_users: int = hp(10_000, 0, identity=False)  # [0, inf)
    # [1, inf): the SASRec paper's sampled protocol
    sampled_negatives: int = hp(100, 1, identity=False)
    processes_per_host: int = hp(0, 0, identity=False)  # [0, inf): 0 = one per GPU, or 1 on CPU
    num_threads: int = hp(0, 0, identity=False)  # [0, inf): torch CPU threads; 0 = torch's default
    progress: bool = hp(True, identity=False)
    # After each evaluated epoch that is not a new best, multiply the learning rate by this
    # (1 = constant), for every model trained. With patience > 1 the model gets a few epochs
    # at a finer step before it stops.
    lr_decay: float = hp(1.0, 0.0, 1.0, lo_open=True)  # (0, 1]
    # Teachers' first epoch evaluated on valid; earlier epochs only train. 1 = every epoch.
    # The last epoch, and one that ends a time budget, is always evaluated.
    eval_from: int = hp(1, 1, identity=False)  # [1, inf)
    # After model selection, train a fresh teacher on train + valid items for the selected
    # number of epochs and report its test figures as "teacher_refit" (its valid figures would
    # be contaminated, so none are recorded). The test item stays unseen.
    refit: bool = hp(False, identity=False)
    # Evaluate, select and export an exponential moving average of the weights (per
    # optimizer step; 0 = off, the live weights). See training/averaging.py.
    ema_decay: float = hp(0.0, 0.0, 1.0, hi_open=True)  # [0, 1)
    # Teacher only: while training, replace each input item by a random catalog item with
    # this probability (targets unchanged); a regulariser for sparse logs. 0 = off.
    input_noise: float = hp(0.0, 0.0, 1.0, hi_open=True)  # [0, 1)
    # Teachers only: the share of each training target spread over the items that followed
    # the input item in the training split, by the users who made each pair (label smoothing
    # toward counting; training/count_targets.py). Not part of the exported model. 0 = off.
    count_targets: float = hp(0.3, 0.0, 1.0, hi_open=True)  # [0, 1)
    # Where the id item tables of the teachers and student_plain start (training/item_init.py):
    # "cooccurrence" = the training split's co-occurrence (PPMI factorised by SVD, or random
    # indexing where the SVD leaves most items near zero), "random" = SASRec's truncated
    # normal. The distilled student starts from its teacher either way.
    item_init: str = hp("cooccurrence", choices=("cooccurrence", "random"))
    # The tuned baselines' grids (training/cf.py): "full", or "first" (each grid's first point
    # only: ALS 64 factors at alpha 1 and EASE lambda 100, what the full grids chose on
    # MovieLens 100K; `make demo` uses it to save ~20 s).
    cf_grid: str = hp("full", choices=("full", "first"), identity=False)
    # Train this many teachers, seeds seed, seed + 1, ..., and use them as one: the mean of
    # their log-softmax scores over the catalog (evaluation, distillation).
    teachers: int = hp(1, 1)  # [1, inf)


@dataclass
class StudentConfig:
    """The small serving model, distilled from the teacher (names prefixed to stay unique)."""

    student: bool = hp(True, identity=False)  # train and export a student
    # Also train it without distillation; the job serves whichever is better on valid.
    student_plain: bool = hp(True, identity=False)
    student_d_model: int = hp(48, 1)  # [1, inf), a multiple of student_n_heads
    student_n_blocks: int = hp(1, 1)  # [1, inf)
    student_n_heads: int = hp(1, 1)  # [1, inf)
    student_max_len: int = hp(50, 2)  # [2, inf)
    student_dropout: float = hp(0.2, 0.0, 1.0, hi_open=True)  # [0, 1)
    student_ffn_mult: int = hp(2, 1)  # [1, inf)
    # 0 = chosen from the loss (training/plan.py): 2e-3 with the full softmax, 1e-3 with the
    # sampled one.
    student_lr: float = hp(0.0, 0.0)  # [0, inf)
    # [0, inf): 0 = the teacher's epochs (set or chosen)
    student_epochs: int = hp(0, 0, identity=False)
    # [0, inf): per student; 0 = max_train_seconds
    student_max_seconds: float = hp(0.0, 0.0, identity=False)
    # Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(true next item).
    distill_alpha: float = hp(0.7, 0.0, 1.0)  # [0, 1]
    distill_temperature: float = hp(1.0, 0.0, lo_open=True)  # (0, inf)
    # Item-to-item transition counts served beside the small model (lmrec.transitions), their
    # weight chosen on valid (0 = none shipped). A pair ships only when at least
    # transitions_min_users users made it: never fewer than 2, so no pair is one user's.
    transitions: bool = hp(True)
    # Distil the teacher as it is used: teacher + transitions at the teacher's weight
    # (chosen on valid before the students train; training/distill.py). Off: the teacher alone.
    distill_transitions: bool = hp(True)
    transitions_min_users: int = hp(2, 2)  # [2, inf)
    transitions_per_item: int = hp(50, 1)  # [1, inf): most common successors kept per item
    # How the bundle stores the item table: float32, float16, or int8 with per-row scales.
    item_table_dtype: str = hp("float32", choices=("float32", "float16", "int8"), identity=False)

    def model_config(self, n_items: int) -> ModelConfig:
        return ModelConfig(
            n_items=n_items,
            d_model=self.student_d_model,
            n_blocks=self.student_n_blocks,
            n_heads=self.student_n_heads,
            max_len=self.student_max_len,
            dropout=self.student_dropout,
            ffn_mult=self.student_ffn_mult,
        )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    # Hyperparameters the user (or a preset) set; the rest may adapt to the data.
    given: frozenset[str] = field(default_factory=frozenset)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("given")
        return out


CONTENT_KINDS = ("text", "categorical", "numeric", "skip")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, raw: Any, typ: type) -> Any:
    text = str(raw).strip()
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if typ is int:
            value = float(text)  # SageMaker tuners send integers as "3.0"
            if not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"hyperparameter {name}={raw!r} is not a valid {typ.__name__}") from None


def _index() -> dict[str, tuple[str, type]]:
    """Flat hyperparameter name -> (section, type). Names are unique across sections."""
    out: dict[str, tuple[str, type]] = {}
    sections = (
        ("data", DataConfig),
        ("model", ModelConfig),
        ("train", TrainConfig),
        ("student", StudentConfig),
    )
    for section, cls in sections:
        hints = get_type_hints(cls)
        for f in fields(cls):
            out[f.name] = (section, hints[f.name])
    return out


def from_hyperparameters(hp: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from flat hyperparameters (SageMaker strings or CLI values)."""
    cfg = RunConfig()
    index = _index()
    given = set()
    for name, raw in hp.items():
        if name.startswith("sagemaker_") or name.startswith("_"):
            continue  # set by SageMaker itself (e.g. sagemaker_program), not ours
        if name not in index or name == "n_items":
            known = ", ".join(sorted(k for k in index if k != "n_items"))
            raise ConfigError(f"unknown hyperparameter {name!r}; known: {known}")
        section, typ = index[name]
        setattr(getattr(cfg, section), name, _convert(name, raw, typ))
        given.add(name)
    cfg.given = frozenset(given)
    validate(cfg)
    return cfg


def _range_error(name: str, value: Any, meta: dict) -> str | None:
    """The message if `value` is outside the field's declared range, else None."""
    if meta.get("choices"):
        if value in meta["choices"]:
            return None
        options = ", ".join(repr(c) for c in meta["choices"])
        return f"{name} must be one of {options}"
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):  # nan passes every comparison
        return f"{name} must be a finite number"
    below = value <= lo if meta["lo_open"] else value < lo
    above = hi is not None and (value >= hi if meta["hi_open"] else value > hi)
    if not (below or above):
        return None
    if hi is None:
        return f"{name} must be {'>' if meta['lo_open'] else '>='} {_bound(lo)}"
    left, right = "(" if meta["lo_open"] else "[", ")" if meta["hi_open"] else "]"
    return f"{name} must be in {left}{_bound(lo)}, {_bound(hi)}{right}"


def _bound(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"  # 4294967295, not 4.29497e+09


def not_identity() -> frozenset[str]:
    """The hyperparameters declared identity=False: a checkpoint's identity is the rest."""
    sections = (DataConfig, ModelConfig, TrainConfig, StudentConfig)
    return frozenset(
        f.name for s in sections for f in fields(s) if not f.metadata.get("identity", True)
    )


def validate(cfg: RunConfig) -> None:
    """Every field against its declared range, then the rules that tie fields together."""
    for section in (cfg.data, cfg.model, cfg.train, cfg.student):
        for f in fields(section):
            message = _range_error(f.name, getattr(section, f.name), dict(f.metadata))
            if message:
                raise ConfigError(message)
    m, st = cfg.model, cfg.student
    if m.d_model % m.n_heads:  # 0 (chosen from the data) is one; every choice is too
        raise ConfigError("d_model must be a positive multiple of n_heads")
    if st.student_d_model % st.student_n_heads:
        raise ConfigError("student_d_model must be a positive multiple of student_n_heads")
    for part in (p.strip() for p in cfg.data.content_columns.split(",")):
        name, _, kind = part.rpartition(":")
        if part and (not name.strip() or kind.strip() not in CONTENT_KINDS):
            raise ConfigError(
                f"content_columns: {part!r} is not column:kind, kind one of "
                + ", ".join(CONTENT_KINDS)
            )


def load_hyperparameters(path, required: bool = False) -> dict[str, Any]:
    """Hyperparameters from a JSON file; a missing file means defaults unless `required`."""
    try:
        with open(path, encoding="utf-8") as fh:
            hp = json.load(fh)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such hyperparameters file") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read hyperparameters: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(hp, dict):
        raise ConfigError(f"{path} must hold a JSON object of hyperparameters")
    return hp


def key_value(item: str, option: str = "--set") -> tuple[str, str]:
    """One `KEY=VALUE` pair: the key stripped, the value kept exactly as given. `option` names
    where the pair came from in the error ("" when argparse adds "argument --x: " itself)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} {item!r}: expected KEY=VALUE".lstrip())
    return key.strip(), value


def set_argument(item: str) -> str:
    """argparse `type=` for a `--set` option: a pair without "=" or a key is refused while
    the command line is parsed (one line, exit 2), before any data is read or job launched."""
    key_values([item])
    return item


# The hint for `NAME:key=value,...` options (teacher_study --variant/--base, sweep --config).
COMMA_PAIRS = " (pairs are split at ',': a value cannot hold one here)"


def key_values(items: list[str], hint: str = "") -> dict[str, str]:
    """Pairs in order as a dict, a later pair for a key winning, as on the CLI; for argparse
    `type=` functions: a bad pair is an ArgumentTypeError (`hint` appended to its line)."""
    import argparse

    try:
        return dict(key_value(item, option="") for item in items)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc}{hint}") from None
