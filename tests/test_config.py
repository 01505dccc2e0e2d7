"""SageMaker hyperparameters arrive as strings; bad ones fail fast with one line."""

from __future__ import annotations

import argparse

import pytest

from training.config import ConfigError, from_hyperparameters, key_value, key_values


def test_strings_are_converted_by_field_type():
    cfg = from_hyperparameters(
        {
            "d_model": "128",
            "n_heads": "4",
            "dropout": "0.25",
            "progress": "false",
            "epochs": "3.0",
            "loss": "sampled",
            "sagemaker_program": "ignored",
        }
    )
    assert cfg.model.d_model == 128 and cfg.model.n_heads == 4
    assert cfg.model.dropout == 0.25 and cfg.train.progress is False
    assert cfg.train.epochs == 3 and cfg.train.loss == "sampled"


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"d_modle": "64"}, "unknown hyperparameter 'd_modle'"),
        ({"epochs": "ten"}, "epochs='ten' is not a valid int"),
        ({"epochs": "2.5"}, "epochs='2.5' is not a valid int"),
        ({"progress": "maybe"}, "progress='maybe' is not a valid bool"),
        ({"d_model": "65", "n_heads": "2"}, "d_model must be a positive multiple of n_heads"),
        ({"loss": "bce"}, "loss must be one of 'auto', 'full', 'sampled'"),
        ({"dropout": "1.5"}, "dropout must be in [0, 1)"),
        ({"n_items": "5"}, "unknown hyperparameter 'n_items'"),
        ({"lr_decay": "0"}, "lr_decay must be in (0, 1]"),
        ({"lr_decay": "1.5"}, "lr_decay must be in (0, 1]"),
        ({"lr_schedule": "cosine"}, "unknown hyperparameter 'lr_schedule'"),
        ({"distill_topk": "10"}, "unknown hyperparameter 'distill_topk'"),
        ({"epochs": "-1"}, "epochs must be >= 0"),
        ({"lr": "0"}, "lr must be > 0"),
        ({"distill_alpha": "1.5"}, "distill_alpha must be in [0, 1]"),
        ({"student_d_model": "50", "student_n_heads": "4"}, "student_d_model must be"),
        ({"item_table_dtype": "int4"}, "item_table_dtype must be one of"),
        ({"eval_from": "0"}, "eval_from must be >= 1"),
    ],
)
def test_bad_hyperparameters(hp, message):
    with pytest.raises(ConfigError) as err:
        from_hyperparameters(hp)
    assert message in str(err.value)


def test_every_hyperparameter_declares_its_range_or_is_free_text():
    from dataclasses import fields

    from training.config import DataConfig, ModelConfig, StudentConfig, TrainConfig

    free = {"user_col", "item_col", "time_col", "event_types", "category_column", "n_items"}
    free |= {"content_columns"}  # column:kind pairs, checked by validate
    for section in (DataConfig, ModelConfig, TrainConfig, StudentConfig):
        for f in fields(section):
            if f.type in ("bool", bool) or f.name in free or f.name == "seed":
                continue
            assert f.metadata.get("lo") is not None or f.metadata.get("choices"), f.name


def test_given_hyperparameters_are_remembered():
    cfg = from_hyperparameters({"epochs": "3", "loss": "full"})
    assert cfg.given == {"epochs", "loss"}
    assert "given" not in cfg.to_dict()


# The checkpoint identity's exclusions as training/pipeline.py listed them by hand before
# they were declared on the fields; a new hyperparameter is classified where it is declared.
NOT_IDENTITY_BEFORE = {
    "epochs",
    "student_epochs",
    "patience",
    "max_train_seconds",
    "student_max_seconds",
    "max_total_seconds",
    "teacher_share",  # added later: how long, not what the weights are
    "eval_every",
    "eval_from",
    "eval_batch_size",
    "eval_users",
    "cf_grid",
    "sampled_negatives",
    "processes_per_host",
    "num_threads",
    "progress",
    "refit",
    "student",
    "student_plain",
    "item_table_dtype",
    "category_column",
    "min_interactions",
    "min_users",
}


def test_every_hyperparameter_is_classified_for_the_checkpoint_identity():
    from dataclasses import fields

    from training import config

    sections = (config.DataConfig, config.ModelConfig, config.TrainConfig, config.StudentConfig)
    declared = {f.name: f.metadata.get("identity") for s in sections for f in fields(s)}
    unclassified = [name for name, identity in declared.items() if not isinstance(identity, bool)]
    assert unclassified == [], "declare these with hp(...), identity=True or False"
    derived = config.not_identity()
    assert derived == NOT_IDENTITY_BEFORE
    # what shapes the students' weights is part of their identity
    student = {f.name for f in fields(config.StudentConfig)}
    assert {n for n in student if n.startswith(("distill_", "transitions"))}.isdisjoint(derived)


def test_set_pairs_keep_the_value_as_given_and_the_last_pair_wins():
    assert key_value(" lr =3e-3") == ("lr", "3e-3")
    assert key_value("item_col=a=b ") == ("item_col", "a=b ")  # only the first "=" splits
    assert key_value("preset=") == ("preset", "")
    assert key_values(["epochs=3", "lr=1e-3", "epochs=5"]) == {"epochs": "5", "lr": "1e-3"}
    for bad in ("epochs", "=5", "  =5", ""):
        with pytest.raises(ConfigError, match=f"^--set {bad!r}: expected KEY=VALUE$"):
            key_value(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'epochs': expected KEY=VALUE, hint$"):
        key_values(["lr=1", "epochs"], hint=", hint")
