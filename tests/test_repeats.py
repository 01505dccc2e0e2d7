"""Repeat consumption and the time split: what repeats=auto chooses, the time split's cut,
the repeat / explore partition of the figures, the history expert, the gate across splits,
and serving's default exclude_seen from the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from lmrec import bundle as fmt
from lmrec.history import HistoryExpert, decayed_counts
from lmrec.promote import gate
from lmrec.recommend import Recommender

from benchmarks.repeat_data import generate
from tests.conftest import TINY_HP, train_bundle, write_csv
from training.baselines import OwnFrequent, OwnRecent, Popularity, RecentPopularity
from training.config import DataConfig
from training.data import choose_repeats, load_interactions
from training.evaluate import evaluate, is_repeat, sample_negatives
from training.split import make_split

SMALL = {"min_interactions": 1, "min_users": 1}


@pytest.fixture(scope="module")
def repeat_log(tmp_path_factory) -> Path:
    """A small synthetic repeat-consumption log (benchmarks/repeat_data.py)."""
    path = tmp_path_factory.mktemp("repeats") / "log.csv"
    generate(users=120, items=60, mean_length=20, seed=1).to_csv(path, index=False)
    return path


def test_auto_keeps_repeats_of_a_repeat_heavy_log_and_says_why(repeat_log, capsys):
    # GIVEN a log where most rows repeat a (user, item) pair WHEN it is loaded under auto
    data = load_interactions(str(repeat_log), DataConfig(**SMALL))
    # THEN every row is kept, and the job said what it chose, why, and the share
    assert (
        data.stats["repeats"]["mode"] == "keep" and data.stats["dropped"]["repeated_user_item"] == 0
    )
    assert data.stats["repeats"]["share"] > 0.5
    line = capsys.readouterr().err
    assert "repeats: auto chose keep (" in line and "rows repeat a (user, item) pair" in line


def test_auto_drops_repeats_of_a_shop_log(ml100k_small, capsys):
    # GIVEN MovieLens (each film rated once) WHEN loaded under auto THEN repeats are dropped
    data = load_interactions(str(ml100k_small[0]), DataConfig(**SMALL))
    assert data.stats["repeats"]["mode"] == "drop" and data.stats["repeats"]["share"] == 0.0
    assert "repeats: auto chose drop (0.0% of" in capsys.readouterr().err


def test_choose_repeats_threshold_and_set_values():
    some = choose_repeats("auto", 49, 100)
    assert some["mode"] == "drop"
    assert "set repeats=keep if your users come back to items" in some["why"]  # not "a shop"
    assert "each item is taken once" in choose_repeats("auto", 0, 100)["why"]
    assert choose_repeats("auto", 28, 100)["mode"] == "drop"  # the scale ladder's L: a shop
    assert choose_repeats("auto", 50, 100)["mode"] == "keep"
    assert choose_repeats("drop", 90, 100) | {"why": ""} == {
        "mode": "drop",
        "share": 0.9,
        "chosen_by": "set",
        "why": "",
    }


def test_time_split_trains_only_before_the_valid_cut(repeat_log):
    # GIVEN a log WHEN split by time
    data = load_interactions(str(repeat_log), DataConfig(**SMALL))
    split = make_split(data, "time", exclude_seen=False)
    c_v, c_t = split.cuts["valid"], split.cuts["test"]  # type: ignore[index]
    # THEN training is everything before c_v, about 10% of rows are at or after it
    train = split.train_mask()
    assert c_v < c_t and data.timestamps[train].max() < c_v
    assert not (data.timestamps[~train] < c_v).any()
    assert 0.08 < (~train).mean() < 0.12
    # AND valid and test are the same rule at their own cut-off: the first interaction at or
    # after it, given everything before it, for users known before c_v
    for evalset, cut in ((split.valid, c_v), (split.test, c_t)):
        at = data.offsets[evalset.users] + evalset.prefix_len
        assert (data.timestamps[at] >= cut).all() and (data.timestamps[at - 1] < cut).all()
        assert np.array_equal(data.items[at], evalset.targets)
        assert (split.train_len[evalset.users] >= 1).all()
    # AND a valid target is before c_t: no (history, target) pair is in both parts
    assert (data.timestamps[data.offsets[split.valid.users] + split.valid.prefix_len] < c_t).all()
    # AND the refit trains on everything before c_t; test stays unseen
    refit = split.with_valid_in_train()
    assert data.timestamps[refit.train_mask()].max() < c_t
    assert not (data.timestamps[~refit.train_mask()] < c_t).any() and refit.test is split.test
    assert split.describe() == {"name": "time", "exclude_seen": False, "cuts": split.cuts}


def test_time_split_on_a_hand_built_log(tmp_path):
    # GIVEN 60 rows: c_v = 50 (6 rows at or after it), c_t = 80 (3 rows at or after it)
    rows = [["a", "a1", 10], ["a", "a2", 20], ["a", "a3", 50], ["a", "a4", 80]]
    rows += [["b", "b1", 11], ["b", "b2", 50]]  # active in [c_v, c_t) only
    rows += [["c", "c1", 12], ["c", "c2", 80]]  # quiet in [c_v, c_t), back after c_t
    rows += [["e", "e1", 60], ["e", "e2", 90]]  # new after c_v: a cold start
    rows += [["f", f"f{t}", t] for t in range(50)]  # history only
    path = write_csv(tmp_path / "log.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(repeats="keep", **SMALL))
    # WHEN split by time
    split = make_split(data, "time", exclude_seen=False)
    assert split.cuts == {"valid": 50.0, "test": 80.0}

    def seen(evalset):
        return {
            str(data.user_ids[u]): (
                [str(data.item_ids[i - 1]) for i in split.history(u, p)],
                str(data.item_ids[t - 1]),
            )
            for u, p, t in zip(evalset.users, evalset.prefix_len, evalset.targets, strict=True)
        }

    # THEN valid asks each user known before c_v for their first item in [c_v, c_t)
    assert seen(split.valid) == {"a": (["a1", "a2"], "a3"), "b": (["b1"], "b2")}
    # AND test for their first item at or after c_t, given all before c_t (a3 included,
    # which no model trained on); e, new after c_v, is in neither
    assert seen(split.test) == {"a": (["a1", "a2", "a3"], "a4"), "c": (["c1"], "c2")}
    by_user = dict(zip(data.user_ids.tolist(), split.train_len.tolist(), strict=True))
    assert by_user == {"a": 2, "b": 1, "c": 1, "e": 0, "f": 50}
    refit = dict(zip(data.user_ids.tolist(), split.with_valid_in_train().train_len, strict=True))
    assert refit == {"a": 3, "b": 2, "c": 1, "e": 1, "f": 50}
    # AND a sample of one user per part draws each part's own user
    split.sample_eval_users(1, seed=0)
    for part in ("valid", "test"):
        ev = split.evalset(part)
        assert len(ev) == 1 and ev.users[0] in getattr(split, part).users


def test_repeat_and_explore_parts_sum_to_all(repeat_log):
    # GIVEN repeats kept and a baseline that favours the user's own items
    data = load_interactions(str(repeat_log), DataConfig(**SMALL))
    split = make_split(data, "loo", exclude_seen=False)
    evalset = split.evalset("test")
    negatives = sample_negatives(split, evalset, 20, seed=0)
    # WHEN evaluated
    m = evaluate(OwnFrequent(split), split, evalset, negatives)
    full, rep, exp = m["full"], m["full_repeat"], m["full_explore"]
    # THEN the two parts partition the users, and their sums add up to the whole
    hist = [split.history(u, p) for u, p in zip(evalset.users, evalset.prefix_len, strict=True)]
    assert rep["users"] == int(is_repeat(hist, evalset.targets).sum()) > 0
    assert rep["users"] + exp["users"] == full["users"]
    for key in ("hr@10", "ndcg@10", "mrr"):
        total = rep[key] * rep["users"] + exp[key] * exp["users"]
        assert total == pytest.approx(full[key] * full["users"])
        assert len(rep[key + "_ci95"]) == 2
    # AND with seen items ranked, the own-items baseline beats popularity on repeats
    pop = evaluate(Popularity(split), split, evalset, negatives)
    assert rep["hr@10"] > pop["full_repeat"]["hr@10"]


def test_without_repeats_no_parts_are_reported(ml100k_small):
    data = load_interactions(str(ml100k_small[0]), DataConfig(**SMALL))
    split = make_split(data, "loo", exclude_seen=True)
    evalset = split.evalset("test")
    m = evaluate(RecentPopularity(split), split, evalset, sample_negatives(split, evalset, 20, 0))
    assert "full_repeat" not in m and m["full"]["users"] == len(evalset)


def test_own_baselines_order_the_users_items():
    # GIVEN a history a b a c (oldest first)
    class _Split:  # the two fields the baselines read, via Popularity
        def item_counts(self):
            return np.array([0, 5, 1, 1, 9])

    hist = [np.array([1, 2, 1, 3])]
    frequent = OwnFrequent(_Split())(hist)[0]  # type: ignore[arg-type]
    recent = OwnRecent(_Split())(hist)[0]  # type: ignore[arg-type]
    # THEN own_frequent puts a first, own_recent c first; unseen item 4 after all three
    assert np.argmax(frequent[1:]) + 1 == 1 and np.argmax(recent[1:]) + 1 == 3
    assert frequent[4] < min(frequent[1:4]) and recent[4] < min(recent[1:4])


def test_history_expert_boosts_decayed_counts():
    rows, items, sums = decayed_counts([np.array([5, 2, 5]), np.array([7])], decay=0.5, window=10)
    got = {(int(r), int(i)): float(s) for r, i, s in zip(rows, items, sums, strict=True)}
    assert got == {(0, 2): 0.5, (0, 5): 1.0 + 0.25, (1, 7): 1.0}
    scores = np.zeros((1, 8), np.float32)
    HistoryExpert(2.0, 0.5).add_to(scores, [np.array([5, 2, 5])])
    assert scores[0, 5] == pytest.approx(2 * np.log1p(1.25)) and scores[0, 3] == 0


def test_the_recency_form_orders_every_history_item_as_own_recent_does():
    from lmrec.history import read, recency_values

    # GIVEN a burst-heavy history: item 5 taken often long ago, then 2, 9, 2, then 7 once
    history = np.array([5, 5, 5, 5, 2, 9, 2, 7])
    rows, items, values = recency_values([history, np.array([], np.int64)], 0.5, window=10)
    got = {int(i): float(v) for i, v in zip(items, values, strict=True)}
    # THEN the distinct items rank by their last occurrence, whatever their counts
    assert set(rows.tolist()) == {0} and got == {7: 1.0, 2: 0.5, 9: 0.25, 5: 0.125}
    # AND a large weight ranks them exactly as own_recent (7, 2, 9, 5) above any model score
    scores = np.random.default_rng(0).normal(size=(1, 10)).astype(np.float32)
    read({"weight": 4096, "decay": 0.5, "window": 200, "form": "recency"}).add_to(scores, [history])
    assert np.argsort(-scores[0])[:4].tolist() == [7, 2, 9, 5]
    # AND where a burst pushes an item 31 positions back, the positional form's boost for it
    # is gone (about 4096 * 0.5 ** 31) while the recency form keeps its rank (third)
    burst = np.array([5, *[2] * 30, 7])
    positional = dict(zip(*decayed_counts([burst], 0.5, 200)[1:], strict=True))
    ranked = dict(zip(*recency_values([burst], 0.5, 200)[1:], strict=True))
    assert 4096 * np.log1p(positional[5]) < 1e-5 and ranked[5] == 0.25


def test_history_expert_form_round_trips_and_bad_forms_are_refused():
    from lmrec.history import read

    recency = HistoryExpert(8.0, 0.5, 200, "recency")
    assert read(recency.parameters()) == recency
    assert "form" not in HistoryExpert(8.0, 0.5).parameters()  # old bundles read the same
    assert read({"weight": 8, "decay": 0.5, "window": 200}).form == "decayed"
    with pytest.raises(ValueError, match="form must be one of decayed, recency, not 'rank'"):
        read({"weight": 8, "decay": 0.5, "window": 200, "form": "rank"})


def _with_manifest(src: Path, dst: Path, **keys) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / fmt.MANIFEST).read_text())
    manifest.update(keys)
    for key in [k for k, v in keys.items() if v is None]:
        manifest.pop(key)
    (dst / fmt.MANIFEST).write_text(json.dumps(manifest))
    return dst


def test_serving_default_exclude_seen_follows_the_manifest(trained_bundle, tmp_path):
    # GIVEN one bundle that says repeats were kept, one dropped, one from before the key
    keep = _with_manifest(trained_bundle, tmp_path / "keep", repeats={"mode": "keep", "share": 0.6})
    drop = _with_manifest(trained_bundle, tmp_path / "drop", repeats={"mode": "drop", "share": 0})
    old = _with_manifest(trained_bundle, tmp_path / "old", repeats=None)
    # THEN the recommender's default is what the data taught; an old bundle excludes seen
    assert Recommender.load(str(keep)).default_exclude_seen is False
    assert Recommender.load(str(drop)).default_exclude_seen is True
    assert Recommender.load(str(old)).default_exclude_seen is True


def test_a_bundle_with_a_history_expert_serves_the_users_items(trained_bundle, tmp_path):
    # GIVEN a bundle with a strong history expert, repeats kept
    expert = {"weight": 50.0, "decay": 0.9, "window": 200}
    path = _with_manifest(
        trained_bundle,
        tmp_path / "hist",
        repeats={"mode": "keep", "share": 0.6},
        history_expert=expert,
    )
    rec = Recommender.load(str(path))
    from lmrec.recommend import Filters

    history = np.array([3, 7, 3, 9])
    # WHEN asked without excluding seen items THEN the user's own items come first
    top = [r.row for r in rec.recommend(history, Filters(k=3, exclude_seen=False)).items]
    assert set(top) == {3, 7, 9} and top[0] == 3
    # AND ranking candidates applies the same boost
    ranked = rec.rank(history, np.array([1, 2, 3]), explain=False)
    assert ranked.items[0].row == 3
    # AND a bad expert record is refused at load
    bad = _with_manifest(
        trained_bundle, tmp_path / "bad", history_expert={"weight": -1, "decay": 0.9, "window": 5}
    )
    with pytest.raises(fmt.BundleError, match="history_expert"):
        fmt.load(str(bad))


def test_the_gate_refuses_to_compare_figures_across_splits():
    # GIVEN a candidate measured on a time split and production on leave-one-out, no paired
    # record (the job ran without a model store)
    def manifest(split: str | None, ndcg: float) -> dict:
        m: dict = {
            "served": {"model": "student", "transitions_weight": 0, "weights": "s.safetensors"},
            "metrics": {"student": {"test": {"full": {"ndcg@10": ndcg}}}},
        }
        if split:
            m["split"] = {"name": split}
        return m

    verdict = gate(manifest("time", 0.30), manifest(None, 0.10), 0.0, "v1")
    # THEN it is refused, and the reason says why and what to do
    assert not verdict.accept
    assert "time split, production on a loo split" in verdict.reason
    assert "LMREC_STORE_URI" in verdict.reason
    # AND like with like is compared as before
    assert gate(manifest("time", 0.30), manifest("time", 0.10), 0.0, "v1").accept
    assert gate(manifest("loo", 0.30), manifest(None, 0.10), 0.0, "v1").accept


def test_time_split_with_no_evaluable_user_is_a_data_error(tmp_path):
    # GIVEN every interaction at one time: nobody has history before the cut
    rows = [[f"u{u}", f"i{i}", 5] for u in range(30) for i in range(40)]
    path = write_csv(tmp_path / "flat.csv", ["user_id", "item_id", "timestamp"], rows)
    from training.config import from_hyperparameters
    from training.data import DataError
    from training.pipeline import prepare_data
    from training.sagemaker import Paths

    cfg = from_hyperparameters({"split": "time", **SMALL})
    paths = Paths(str(path), None, tmp_path / "model", None, None)
    with pytest.raises(DataError, match="split=time: no user can be evaluated") as err:
        prepare_data(paths, cfg)
    assert "(0 for valid, 0 for test)" in str(err.value) and "coincide" in str(err.value)


def test_a_job_says_when_its_valid_users_are_too_few_to_choose_on(tmp_path, capsys):
    # GIVEN a log whose time split leaves a handful of valid users
    rows = [["a", "a1", 10], ["a", "a2", 20], ["a", "a3", 50], ["a", "a4", 80]]
    rows += [["b", "b1", 11], ["b", "b2", 50], ["c", "c1", 12], ["c", "c2", 80]]
    rows += [["f", f"f{t}", t] for t in range(50)]
    path = write_csv(tmp_path / "log.csv", ["user_id", "item_id", "timestamp"], rows)
    from training.config import from_hyperparameters
    from training.pipeline import prepare_data
    from training.sagemaker import Paths

    cfg = from_hyperparameters({"split": "time", "repeats": "keep", **SMALL})
    _, split, _ = prepare_data(Paths(str(path), None, tmp_path / "m", None, None), cfg)
    # THEN the job goes on and says, in one line, why its choices are noise
    said = capsys.readouterr().err
    assert 0 < len(split.valid) < 100
    assert f"split=time: only {len(split.valid)} valid users (fewer than 100)" in said
    assert "mostly noise" in said and "split=loo" in said


def test_time_split_with_valid_users_but_no_test_user_is_a_data_error(tmp_path):
    # GIVEN users active before c_v and in [c_v, c_t), but the rows at c_t are a newcomer's
    rows = [[f"u{u}", f"i{t}", t] for u in range(5) for t in range(10)]
    rows += [[f"u{u}", "late", 20] for u in range(3)] + [["new", f"n{t}", 30] for t in range(3)]
    path = write_csv(tmp_path / "log.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(repeats="keep", **SMALL))
    from training.data import DataError

    # WHEN split by time THEN a readable error names both counts and the cut-offs
    with pytest.raises(DataError, match=r"\(3 for valid, 0 for test\).*at or after 30.0"):
        make_split(data, "time")


def test_exclude_seen_resolution_request_then_deployment_then_model(monkeypatch):
    from lmrec.api.routes.recommendations import exclude_seen
    from lmrec.settings import ApiSettings

    class _Rec:
        default_exclude_seen = False  # the model kept repeats

    rec = _Rec()
    # GIVEN no deployment setting THEN the model decides unless the request says
    assert exclude_seen(None, None, rec) is False  # type: ignore[arg-type]
    assert exclude_seen(True, None, rec) is True  # type: ignore[arg-type]
    # AND LMREC_EXCLUDE_SEEN overrides the model, a request overrides both
    monkeypatch.setenv("LMREC_EXCLUDE_SEEN", "true")
    deployment = ApiSettings().exclude_seen
    assert deployment is True and exclude_seen(None, deployment, rec) is True  # type: ignore[arg-type]
    assert exclude_seen(False, deployment, rec) is False  # type: ignore[arg-type]
    monkeypatch.setenv("LMREC_EXCLUDE_SEEN", "maybe")
    with pytest.raises(ValueError, match="exclude_seen"):
        ApiSettings()


def test_a_paired_record_from_another_split_is_not_used():
    # GIVEN a candidate on a time split whose paired record says it was taken on loo
    from tests.test_promotion_faults import paired_record

    record = paired_record()  # taken on loo
    served = {"model": "student", "transitions_weight": 0, "weights": "s.safetensors"}
    metrics = {"student": {"test": {"full": {"ndcg@10": 0.3}}}}
    cand = {"served": served, "metrics": metrics, "split": {"name": "time"}, "champion": record}
    prod = {"served": served, "metrics": metrics, "split": {"name": "time"}}
    # THEN the gate does not take it as paired, and says why
    verdict = gate(cand, prod, 0.0, "v1")
    assert verdict.basis == "own splits" and "on a loo split" in verdict.reason
    # AND the same record on the candidate's split is the paired comparison
    cand["champion"] = record | {"split": "time"}
    assert gate(cand, prod, 0.0, "v1").basis == "paired"


@pytest.mark.slow
def test_a_job_on_a_repeat_log_serves_the_users_own_items(repeat_log, tmp_path):
    # GIVEN a repeat-consumption log trained end to end under split=time, repeats auto
    from tests.conftest import TINY_HP, train_bundle

    hp = {**TINY_HP, **SMALL, "split": "time", "eval_users": "0"}
    out = train_bundle(["--data", str(repeat_log)], tmp_path / "model", hp)
    manifest = json.loads((out / fmt.MANIFEST).read_text())
    doc = json.loads((out / "metrics.json").read_text())
    # THEN the manifest says what the data taught and which split the figures come from
    assert manifest["repeats"]["mode"] == "keep" and manifest["split"]["name"] == "time"
    assert doc["protocol"]["split_name"] == "time"
    # AND every model and baseline has repeat and explore figures, the own-items ones too
    for name in ("teacher", "own_frequent", "own_recent", "recent_popularity"):
        assert {"full_repeat", "full_explore"} <= set(doc["metrics"][name]["test"])
    # AND the served record and the bundle agree on the history expert (weight 0: none)
    weight = manifest["served"].get("history_weight", 0)
    loaded = fmt.load(str(out))
    assert (loaded.history is not None) == bool(weight)
    assert Recommender(loaded).default_exclude_seen is False
    assert fmt.served_metric(manifest) in manifest["metrics"]
    # AND the distillation gap compares the served row with the teacher's row of the same
    # experts (a history expert's gain is not counted as the student's)
    gap = doc["summary"]["distillation"]
    assert gap["served"] == fmt.served_metric(manifest)
    rows = ("teacher", "teacher+transitions", "teacher+history", "teacher+transitions+history")
    assert gap["teacher"] == max((r for r in rows if r in doc["metrics"]), key=len)


def test_a_pair_repeated_by_one_user_counts_once(tmp_path):
    # GIVEN one user who plays a then b ten times, and another who does it once
    from training.baselines import pair_counts

    rows = [["u1", item, 2 * t + k] for t in range(10) for k, item in enumerate(("a", "b"))]
    rows += [["u2", "a", 100], ["u2", "b", 101]]
    path = write_csv(tmp_path / "pairs.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(repeats="keep", **SMALL))
    split = make_split(data, "loo", exclude_seen=False)
    split.train_len[:] = data.lengths()  # every row is training data here
    indptr, cols, counts = pair_counts(split, window=1)
    a, b = 1, 2  # items "a", "b"
    # THEN (a, b) counts the two users, not the eleven times it happened
    row = slice(indptr[a], indptr[a + 1])
    got = dict(zip(cols[row].tolist(), counts[row].tolist(), strict=True))
    assert got[b] == 2


def test_the_report_names_both_time_cut_offs():
    from training.report import _split_line

    summary = {"split": {"name": "time", "cuts": {"valid": 50.0, "test": 80.0}}}
    line = _split_line(summary | {"evaluated_users": 1234})
    assert "valid cut-off 50.0 and test cut-off 80.0 (10% and 5%" in line and "1,234" in line


@pytest.mark.slow  # a whole training job, ~10 s
def test_a_time_split_job_refits_before_the_test_cut_off(repeat_log, tmp_path):
    # GIVEN a repeat log WHEN the training job runs under split=time with a refit
    hp = {**TINY_HP, "split": "time", "refit": "true", "epochs": "1", "student_epochs": "1"}
    out = train_bundle(["--data", str(repeat_log)], tmp_path / "model", hp)
    doc = json.loads((out / "metrics.json").read_text())
    m, split = doc["metrics"], doc["summary"]["split"]
    # THEN valid and test are about their own users, and the refit rows are test only
    assert split["name"] == "time" and split["cuts"]["valid"] < split["cuts"]["test"]
    assert m["teacher"]["test"]["full"]["users"] == doc["summary"]["evaluated_users"]
    assert set(m["teacher_refit"]) == {"test"} and set(m["recent_popularity_refit"]) == {"test"}
    # AND the manifest names the split as the report does
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"]["cuts"] == split["cuts"]
    assert "valid cut-off" in (out / "report.md").read_text()


def test_every_weight_the_grid_can_choose_is_one_a_bundle_accepts():
    # GIVEN the history expert's grid (training) and the bundle's range check (serving)
    from lmrec import history

    from training.repeat_expert import DECAYS, WEIGHTS, WINDOW

    # THEN each weight valid can choose loads, and one past the range is refused
    for weight in WEIGHTS[1:]:
        expert = history.read({"weight": weight, "decay": min(DECAYS), "window": WINDOW})
        assert expert.weight == weight
    with pytest.raises(ValueError, match="out of range"):
        history.read({"weight": history.MAX_WEIGHT * 2, "decay": 0.5, "window": WINDOW})


def test_the_recency_form_is_chosen_only_when_valid_says_so_beyond_noise():
    from training.repeat_expert import SHAPES, WEIGHTS, best_point

    rng = np.random.default_rng(0)
    users = 400
    per_user = rng.random((users, len(SHAPES), len(WEIGHTS))) * 0.1
    positional = SHAPES.index(("decayed", 0.5))
    recency = SHAPES.index(("recency", 0.5))
    per_user[:, positional, 3] = 0.50  # the positional form's best point
    # GIVEN the recency form's best point ahead by a hair, with per-user noise
    per_user[:, recency, 5] = 0.50 + rng.normal(0, 0.2, users) + 0.002
    d, w, why = best_point(per_user)
    # THEN the positional form stays (the gain is inside its interval), and the record says so
    assert (d, w) == (positional, 3) and why["recency_minus_decayed"][1] < 0
    # WHEN the recency form is ahead beyond noise THEN it is chosen
    per_user[:, recency, 5] = 0.55 + rng.normal(0, 0.02, users)
    d, w, why = best_point(per_user)
    assert (d, w) == (recency, 5) and why["recency_minus_decayed"][1] > 0
