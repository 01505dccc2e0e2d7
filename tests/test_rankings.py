"""POST /v1/rankings: candidates ordered by the served score (student + transitions boost),
checked against the model's full-catalog scores; unknown ids, filters, auth and bad input
through the Lambda handler."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from lmrec import items
from lmrec.recommend import Filters, Recommender
from lmrec.transitions import Transitions

from tests.conftest import call
from tests.test_api_robustness import HangingServer, as_user, reply
from tests.test_items_index import IDS, catalog_data, student_for
from training import hybrid
from training.bundle_writer import write_bundle
from training.split import leave_one_out

EVENT = "api_post_rankings.json"


def full_scores(rec: Recommender, history: np.ndarray) -> np.ndarray:
    """What recommendations rank the whole catalog by: every row scored, plus the boost."""
    scores = rec.model([history])
    if rec.transitions is not None:
        rec.transitions.add_to(scores, [history])
    return scores[0]


def assert_ranked_as_full(rec: Recommender, history: np.ndarray, ranked: list) -> None:
    """The reply's rows in reply order carry non-increasing full-catalog scores (equal up to
    float rounding: a gather and a product against the whole table round differently), and
    each reply score is that row's full score."""
    full = full_scores(rec, history)
    rows = np.asarray([r.row for r in ranked])
    np.testing.assert_allclose([r.score for r in ranked], full[rows], rtol=1e-5, atol=1e-5)
    assert (np.diff(full[rows]) <= 1e-5).all()


# --- the scoring function, on a 3,000-item bundle with a transitions table ------------------


@pytest.fixture(scope="module", params=["float32", "int8"])
def boosted(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"rank-{request.param}")
    data = catalog_data(tmp)
    table = hybrid.build(leave_one_out(data), min_users=2, per_item=50, weight=2.0)
    out = tmp / "bundle"
    out.mkdir()
    doc = {"metrics": {}, "config": {}, "summary": {"transitions": {"min_users": 2}}}
    student = student_for(data, aligned=True)
    write_bundle(out, student, data, doc, request.param, ann_min_items=1000, transitions=table)
    return Recommender.load(str(out)), data


def test_candidates_are_ordered_as_the_full_scores_restricted_to_them(boosted):
    rec, data = boosted
    assert rec.transitions is not None and rec.index is not None  # rank ignores the index
    rng = np.random.default_rng(4)
    for _ in range(20):
        history = rng.choice(np.arange(1, data.n_items + 1), 8, replace=False)
        # the boosted successors among the candidates, so the boost decides some places
        _, boosted_rows, _ = rec.transitions.boosts([history])
        pool = np.setdiff1d(np.arange(1, data.n_items + 1), boosted_rows)
        rows = rng.permutation(np.concatenate([boosted_rows[:50], rng.choice(pool, 450, False)]))
        result = rec.rank(history, rows)
        assert result.strategy == "personalized" and len(result.items) == len(rows)
        assert sorted(r.row for r in result.items) == sorted(rows.tolist())
        assert_ranked_as_full(rec, history, result.items)
        assert all(r.reason_row in history.tolist() for r in result.items)


def test_the_boost_moves_candidates_and_stays_exact(boosted):
    rec, data = boosted
    assert rec.transitions is not None
    strong = dataclasses.replace(rec.transitions, weight=50.0)
    heavy = Recommender(rec.bundle)
    heavy.transitions = strong
    item = int(np.argmax(np.diff(strong.indptr)))  # the item with the most successors
    successors = strong.cols[strong.indptr[item] : strong.indptr[item + 1]]
    others = np.setdiff1d(np.arange(1, data.n_items + 1), [item, *successors.tolist()])[:100]
    rows = np.concatenate([others, successors])  # the successors given last
    history = np.asarray([item])
    ranked = [r.row for r in heavy.rank(history, rows, explain=False).items]
    assert set(ranked[: len(successors)]) == set(successors.tolist())
    assert_ranked_as_full(heavy, history, heavy.rank(history, rows).items)
    # without the table the same candidates follow the student alone
    plain = Recommender(rec.bundle)
    plain.transitions = None
    assert_ranked_as_full(plain, history, plain.rank(history, rows).items)


def test_a_history_the_model_does_not_know_ranks_by_popularity(boosted):
    rec, _ = boosted
    rows = np.arange(1, 301)
    result = rec.rank(np.empty(0, np.int64), rows)
    assert result.strategy == "popular" and result.history_length == 0
    popularity = [rec.popularity[r.row] for r in result.items]
    assert popularity == sorted(popularity, reverse=True)
    assert all(r.reason is None for r in result.items)


def test_candidate_filters_agree_with_the_catalog_filters(boosted):
    rec, data = boosted
    rng = np.random.default_rng(5)
    history = rng.choice(np.arange(1, data.n_items + 1), 10, replace=False)
    rows = np.concatenate([history[:4], rng.choice(np.arange(1, data.n_items + 1), 300, False)])
    rows = np.unique(rows)
    excluded = [data.item_ids[r - 1] for r in rows[:7]]
    for f in (
        Filters(exclude_seen=True),
        Filters(exclude_seen=False, include_categories=["Horror", "Rare"]),
        Filters(exclude_seen=True, exclude_categories=["Drama"], exclude_items=excluded),
        Filters(include_categories=["Nope"]),
    ):
        expected = rec._allowed(history, f)[rows]  # the mask recommendations use, whole
        assert (rec.candidates_allowed(history, rows, f) == expected).all(), f


@pytest.mark.parametrize("with_fields", [True, False])
def test_lookup_keeps_positions_and_bulk_reads_match_one_row_reads(tmp_path, with_fields):
    columns = {"genres": [["A", "B"], [], ["B"], ["A", "A"], ["C"], []]}
    if with_fields:
        columns = {
            "title": ["One", None, "Th\u00e9", "4", "", "[6]"],
            **columns,
            "year": list(range(6)),
        }
    items.write(tmp_path / "i.safetensors", IDS, columns, "genres")
    cat = items.read(tmp_path / "i.safetensors")
    some = [6, 1, 4, 4, 2]
    assert cat.fields_many(some) == [cat.fields(r) for r in some] and cat.fields_many([]) == []
    assert cat.item_ids.take(np.asarray(some) - 1) == [IDS[r - 1] for r in some]
    assert cat.lookup(["42", "nope", IDS[1], "0042 ", "42"]).tolist() == [5, 0, 2, 0, 5]
    assert cat.lookup([]).tolist() == []
    rows = np.asarray([1, 2, 3, 4, 5, 6])
    assert cat.in_categories(rows, ["A"]).tolist() == [1, 0, 0, 1, 0, 0]
    assert cat.in_categories(rows, ["B", "C", "Z"]).tolist() == [1, 0, 1, 0, 1, 0]
    assert not cat.in_categories(rows, ["Z"]).any()


# --- the route, through the Mangum handler ----------------------------------------------------


def stored_rows(api, user: str) -> np.ndarray:
    rec = api.state.recommender
    recent = api.app.state.users.recent(user, api.app.state.settings.events_per_user)
    return rec.catalog.rows(recent.items())[0]


def rank(api, **body):
    return call(api, EVENT, body=body)


def test_the_sample_event_answers(api):
    status, body = call(api, EVENT)
    assert status == 200, body
    assert body["strategy"] == "personalized" and body["unknown_candidates"] == ["no-such-item"]
    assert body["items"][-1] == {
        "item_id": "no-such-item",
        "score": None,
        "rank": len(body["items"]),
        "attributes": {},
        "reason": None,
    }


def test_the_route_orders_by_the_served_model_with_the_stored_history(api):
    rec = api.state.recommender
    ids = list(rec.catalog.item_ids)
    candidates = [ids[i] for i in np.random.default_rng(6).permutation(len(ids))[:500]]
    status, body = rank(api, user_id="1", history=["50"], candidates=candidates)
    assert status == 200, body
    assert body["strategy"] == "personalized" and len(body["items"]) == 500
    assert sorted(i["item_id"] for i in body["items"]) == sorted(candidates)
    assert [i["rank"] for i in body["items"]] == list(range(1, 501))
    history = np.concatenate([stored_rows(api, "1"), [rec.catalog.row("50")]])
    assert body["history_length"] == len(history)
    full = full_scores(rec, history)
    rows = rec.catalog.lookup([i["item_id"] for i in body["items"]])
    np.testing.assert_allclose([i["score"] for i in body["items"]], full[rows], rtol=1e-5)
    assert (np.diff(full[rows]) <= 1e-5).all()
    assert all(i["reason"]["item_id"] and i["attributes"]["title"] for i in body["items"])


def test_recommendations_and_rankings_agree(api):
    status, recs = call(api, "api_post_recommendations.json", body={"user_id": "1", "k": 20})
    assert status == 200
    top = [i["item_id"] for i in recs["items"]]
    status, body = rank(api, user_id="1", candidates=list(reversed(top)))
    assert status == 200 and [i["item_id"] for i in body["items"]] == top
    np.testing.assert_allclose(
        [i["score"] for i in body["items"]], [i["score"] for i in recs["items"]], rtol=1e-5
    )
    assert [i["reason"] for i in body["items"]] == [i["reason"] for i in recs["items"]]
    assert body["history_length"] == recs["history_length"]


def test_unknown_candidates_come_last_in_the_order_given(api):
    given = ["zz-2", "50", " 50", "181", "zz-1", "172"]
    status, body = rank(api, history=["1"], candidates=given)
    assert status == 200, body
    assert [i["item_id"] for i in body["items"][3:]] == ["zz-2", " 50", "zz-1"]
    assert sorted(i["item_id"] for i in body["items"][:3]) == ["172", "181", "50"]
    assert [i["score"] for i in body["items"][3:]] == [None, None, None]
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5, 6]
    assert body["unknown_candidates"] == ["zz-2", " 50", "zz-1"]
    assert len(body["warnings"]) == 1 and "'zz-2', ' 50', 'zz-1'" in body["warnings"][0]
    # every candidate unknown: all of them, unscored, in the order given
    status, body = rank(api, history=["1"], candidates=["b", "a"])
    assert status == 200 and [i["item_id"] for i in body["items"]] == ["b", "a"]


def test_filters_drop_candidates_and_name_them(api):
    rec = api.state.recommender
    ids = rec.catalog.item_ids
    seen_rows = stored_rows(api, "1")
    horror_rows = rec.catalog.category_rows("Horror")
    seen = [ids[r - 1] for r in np.setdiff1d(seen_rows, horror_rows)[:3]]
    horror = [ids[r - 1] for r in np.setdiff1d(horror_rows, seen_rows)[:3]]
    others = [ids[r - 1] for r in np.setdiff1d(np.arange(1, 200), [*seen_rows, *horror_rows])[:3]]
    candidates = [*seen, *horror, *others]
    status, plain = rank(api, user_id="1", candidates=candidates)
    assert status == 200 and len(plain["items"]) == 9  # exclude_seen is off by default
    status, body = rank(
        api, user_id="1", candidates=candidates, exclude_seen=True, exclude_categories=["Horror"]
    )
    assert status == 200, body
    dropped = set(seen) | set(horror)
    assert set(body["filtered_candidates"]) == dropped
    assert [i["item_id"] for i in body["items"]] == [
        i["item_id"] for i in plain["items"] if i["item_id"] not in dropped
    ]
    assert "removed by the filters (6)" in body["warnings"][0]
    status, body = rank(api, history=["1"], candidates=candidates, include_categories=["Horror"])
    assert status == 200 and {i["item_id"] for i in body["items"]} == set(horror)
    status, body = rank(api, history=["1"], candidates=others, exclude_items=[others[1]])
    assert status == 200 and body["filtered_candidates"] == [others[1]]
    status, body = rank(api, history=["1"], candidates=others, include_categories=["Polka"])
    assert status == 422 and "none is in the catalog" in body["detail"]


def test_a_new_user_is_ranked_by_popularity(api):
    status, body = rank(api, user_id="nobody-yet", candidates=["1", "50", "100", "181"])
    assert status == 200 and body["strategy"] == "popular" and body["history_length"] == 0
    popularity = api.state.recommender.popularity
    rows = api.state.recommender.catalog.lookup([i["item_id"] for i in body["items"]])
    assert list(popularity[rows]) == sorted(popularity[rows], reverse=True)


def test_a_hanging_user_store_ranks_with_the_request_history(api, monkeypatch):
    import lmrec.aws

    server = HangingServer()  # DynamoDB accepts connections and never answers
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", server.url)
    monkeypatch.setattr(lmrec.aws, "_clients", {})
    try:
        status, body = rank(api, user_id="1", history=["50"], candidates=["181", "172", "1"])
    finally:
        server.close()
    assert status == 200 and body["degraded"] is True and body["history_length"] == 1
    assert "did not arrive in time" in body["warnings"][-1] and len(body["items"]) == 3


@pytest.fixture
def jwt_api(monkeypatch, api):
    settings = api.app.state.settings.model_copy(update={"auth": "jwt"})
    monkeypatch.setattr(api.app.state, "settings", settings)
    return api


@pytest.mark.parametrize(
    ("claims", "user_id", "status"),
    [
        ({"sub": "1", "scope": "openid"}, "1", 200),  # their own ranking
        ({"sub": "1", "scope": "openid"}, "2", 403),  # someone else's
        ({"sub": "1", "scope": "openid"}, None, 200),  # the request's history only
        ({"sub": "svc", "scope": "openid lmrec/any-user"}, "2", 200),  # a backend
        ({"scope": "openid"}, "1", 401),  # no user claim
        (None, "1", 401),  # no verified token
    ],
)
def test_auth_as_for_recommendations(jwt_api, claims, user_id, status):
    body = {"user_id": user_id, "history": ["50"], "candidates": ["181", "172"]}
    got, answer = reply(jwt_api, as_user(EVENT, claims, body=body))
    assert got == status, answer
    if status != 200:
        assert set(answer) == {"detail"}


def test_iam_callers_rank_for_any_user(monkeypatch, api):
    settings = api.app.state.settings.model_copy(update={"auth": "iam"})
    monkeypatch.setattr(api.app.state, "settings", settings)
    status, body = call(api, EVENT, body={"user_id": "2", "candidates": ["50"]})
    assert status == 200 and body["user_id"] == "2"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"user_id": "1", "candidates": [str(i) for i in range(501)]}, 422, "at most 500"),
        ({"user_id": "1", "candidates": []}, 422, "candidates: List should have at least 1"),
        ({"user_id": "1"}, 422, "candidates: Field required"),
        ({"user_id": "1", "candidates": [1, 2]}, 422, "candidates.0: Input should be a valid str"),
        ({"user_id": "1", "candidates": "50"}, 422, "candidates: Input should be a valid list"),
        ({"user_id": "1", "candidates": ["x" * 257]}, 422, "at most 256 characters"),
        ({"user_id": "1", "candidates": [" "]}, 422, "must not be blank"),
        ({"user_id": "1", "candidates": ["50", "1", "50"]}, 422, "distinct; repeated: '50'"),
        ({"candidates": ["50"]}, 422, "give a user_id, a history, or both"),
        ({"user_id": "1", "candidates": ["50"], "k": 5}, 422, "k: Extra inputs"),
        ({"user_id": "1", "candidates": ["y" * 256] * 1100}, 413, "request body over"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(api, body, status, fragment):
    got, answer = call(api, EVENT, body=body)
    assert got == status and fragment in answer["detail"], answer
    assert len(answer["detail"]) < 2100


def test_500_ids_of_the_largest_size_fit_the_body_limit(api):
    candidates = [f"{i:03d}".ljust(256, "~") for i in range(500)]  # 129 KB of ids
    status, body = rank(api, user_id="1", candidates=candidates)
    assert status == 200 and body["unknown_candidates"] == candidates
    assert len(json.dumps(body["warnings"])) < 2000


def test_transitions_table_type_is_what_rank_reads():
    # rank() reads a one-history boost as sorted rows; recent_sums promises that order
    table = Transitions(
        np.asarray([0, 0, 2, 3, 3], np.int64),
        np.asarray([3, 2, 1], np.int32),
        np.ones(3, np.float32),
        weight=1.0,
    )
    _, rows, _ = table.boosts([np.asarray([1, 2])])
    assert rows.tolist() == sorted(rows.tolist()) == [1, 2, 3]
