"""Run configuration: one dataclass per concern, parsed from SageMaker's all-string hyperparameters.

SageMaker passes every hyperparameter as a string (hyperparameters.json), so each field's type
annotation drives the conversion, and an unknown key or a bad value fails fast with one line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A hyperparameter that is unknown or cannot be converted."""


@dataclass
class DataConfig:
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    # Items kept only for users with at least this many interactions (after dedupe).
    min_user_interactions: int = 1
    # Optional: keep only these event types (comma separated) when an event_type column exists.
    event_types: str = ""
    # Catalog column whose '|'-separated values the API filters on ("" = genres/category).
    category_column: str = ""
    # Amazon Personalize's floor for a trainable data set.
    min_interactions: int = 1000
    min_users: int = 25


@dataclass
class ModelConfig:
    """SASRec-style causal Transformer; saved inside every checkpoint and export."""

    n_items: int = 0  # catalog size, set from the data (row 0 is padding)
    d_model: int = 64
    n_blocks: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.2
    ffn_mult: int = 4


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    # "full" (softmax over the whole catalog) or "sampled" (shared uniform negatives).
    loss: str = "full"
    num_negatives: int = 2048
    patience: int = 5  # epochs without a better valid NDCG@10 before stopping
    eval_every: int = 1
    seed: int = 42
    # Teacher wall-clock budget in seconds (0 = none); stops after the epoch that crosses it.
    max_train_seconds: float = 0.0
    eval_batch_size: int = 512
    sampled_negatives: int = 100  # the SASRec paper's sampled protocol
    processes_per_host: int = 0  # 0 = one per GPU, or 1 on CPU
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = True
    # Train on a fresh random order of interactions that share a timestamp, every epoch.
    shuffle_ties: bool = True
    # Cut histories longer than the model's window into several windows so every training
    # interaction is a target each epoch (False: only the newest window, as SASRec's code).
    all_windows: bool = True
    # After each evaluated epoch that is not a new best, multiply the learning rate by this
    # (1 = constant), for every model trained. With patience > 1 the model gets a few epochs
    # at a finer step before it stops.
    lr_decay: float = 1.0
    # Teachers' learning rate over time: "plateau" (constant, times lr_decay after each
    # evaluated epoch without a new best) or "cosine" (per step from lr down to 0 over
    # `epochs` epochs, after a linear warmup of `warmup_epochs`). A cosine run does its
    # fine-grained steps at the end of a known number of epochs instead of spending
    # `patience` extra epochs to find out it has stopped improving.
    lr_schedule: str = "plateau"
    warmup_epochs: float = 0.0
    # Teachers' first epoch evaluated on valid; earlier epochs only train (each Games
    # validation ranks the whole catalog for 30,901 users, ~14 s on 2 cores). 1 = every
    # epoch. The last epoch, and one that ends a time budget, is always evaluated.
    eval_from: int = 1
    # After model selection, train a fresh teacher on train + valid items for the selected
    # number of epochs and report its test figures as "teacher_refit" (its valid figures would
    # be contaminated, so none are recorded). The test item stays unseen.
    refit: bool = False
    # Evaluate, select and export an exponential moving average of the weights (per
    # optimizer step; 0 = off, the live weights). See training/averaging.py.
    ema_decay: float = 0.0
    # Teacher only: while training, replace each input item by a random catalog item with
    # this probability (targets unchanged); a regulariser for sparse logs. 0 = off.
    input_noise: float = 0.0
    # Train this many teachers, seeds seed, seed + 1, ..., and use them as one: the mean of
    # their log-softmax scores over the catalog (evaluation, distillation). Seeds disagree
    # most on rare items, where a single sparse-data model is least sure. 1 = one teacher.
    teachers: int = 1


@dataclass
class StudentConfig:
    """The small serving model, distilled from the teacher (names prefixed to stay unique)."""

    student: bool = True  # train and export a student
    student_plain: bool = True  # also train it without distillation, to measure what KD adds
    student_d_model: int = 48
    student_n_blocks: int = 1
    student_n_heads: int = 1
    student_max_len: int = 50
    student_dropout: float = 0.2
    student_ffn_mult: int = 2
    student_lr: float = 2e-3
    student_epochs: int = 100
    student_max_seconds: float = 0.0  # per student; 0 = the teacher's max_train_seconds
    # Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(true next item).
    distill_alpha: float = 0.7
    distill_temperature: float = 1.0
    # 0: the teacher's full distribution over the catalog; K > 0: only its top-K logits.
    distill_topk: int = 0
    # How the bundle stores the item table: float32, float16, or int8 with per-row scales.
    item_table_dtype: str = "float32"

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    for name, raw in hp.items():
        if name.startswith("sagemaker_") or name.startswith("_"):
            continue  # set by SageMaker itself (e.g. sagemaker_program), not ours
        if name not in index or name == "n_items":
            known = ", ".join(sorted(k for k in index if k != "n_items"))
            raise ConfigError(f"unknown hyperparameter {name!r}; known: {known}")
        section, typ = index[name]
        setattr(getattr(cfg, section), name, _convert(name, raw, typ))
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    m, t, st = cfg.model, cfg.train, cfg.student
    positive: dict[str, float] = {
        "d_model": m.d_model,
        "n_heads": m.n_heads,
        "ffn_mult": m.ffn_mult,
        "eval_every": t.eval_every,
        "eval_batch_size": t.eval_batch_size,
        "teachers": t.teachers,
        "student_d_model": st.student_d_model,
        "student_n_heads": st.student_n_heads,
        "student_n_blocks": st.student_n_blocks,
        "student_ffn_mult": st.student_ffn_mult,
        "student_epochs": st.student_epochs,
    }
    for name, value in positive.items():  # checked first: later checks divide by some
        if value < 1:
            raise ConfigError(f"{name} must be >= 1")
    non_negative: dict[str, float] = {
        "max_train_seconds": t.max_train_seconds,
        "weight_decay": t.weight_decay,
        "student_max_seconds": st.student_max_seconds,
        "processes_per_host": t.processes_per_host,
        "num_threads": t.num_threads,
        "min_interactions": cfg.data.min_interactions,
        "min_users": cfg.data.min_users,
    }
    for name, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{name} must be >= 0")
    if st.student_lr <= 0:
        raise ConfigError("student_lr must be > 0")
    checks = [
        (
            m.d_model > 0 and m.d_model % m.n_heads == 0,
            "d_model must be a positive multiple of n_heads",
        ),
        (m.n_blocks >= 1, "n_blocks must be >= 1"),
        (m.max_len >= 2, "max_len must be >= 2"),
        (0.0 <= m.dropout < 1.0, "dropout must be in [0, 1)"),
        (t.epochs >= 1, "epochs must be >= 1"),
        (t.batch_size >= 1, "batch_size must be >= 1"),
        (t.lr > 0, "lr must be > 0"),
        (t.loss in ("full", "sampled"), "loss must be 'full' or 'sampled'"),
        (t.num_negatives >= 1, "num_negatives must be >= 1"),
        (t.patience >= 1, "patience must be >= 1"),
        (0.0 < t.lr_decay <= 1.0, "lr_decay must be in (0, 1]"),
        (t.lr_schedule in ("plateau", "cosine"), "lr_schedule must be 'plateau' or 'cosine'"),
        (
            t.warmup_epochs >= 0.0 and (t.warmup_epochs < t.epochs or t.lr_schedule == "plateau"),
            "warmup_epochs must be >= 0 and less than epochs",
        ),
        (t.eval_from >= 1, "eval_from must be >= 1"),
        (0.0 <= t.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
        (0.0 <= t.input_noise < 1.0, "input_noise must be in [0, 1)"),
        (t.sampled_negatives >= 1, "sampled_negatives must be >= 1"),
        (cfg.data.min_user_interactions >= 1, "min_user_interactions must be >= 1"),
        (
            cfg.student.student_d_model > 0
            and cfg.student.student_d_model % cfg.student.student_n_heads == 0,
            "student_d_model must be a positive multiple of student_n_heads",
        ),
        (cfg.student.student_max_len >= 2, "student_max_len must be >= 2"),
        (0.0 <= cfg.student.distill_alpha <= 1.0, "distill_alpha must be in [0, 1]"),
        (cfg.student.distill_temperature > 0, "distill_temperature must be > 0"),
        (cfg.student.distill_topk >= 0, "distill_topk must be >= 0"),
        (
            cfg.student.item_table_dtype in ("float32", "float16", "int8"),
            "item_table_dtype must be float32, float16 or int8",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


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
