"""The constrained re-ranker (jobs.recsys.diversity) on hand-made candidate lists whose answer is
worked out by hand: each constraint satisfied where the candidates allow it, and flagged
(with the shelf still filled) where they do not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jobs.core.config import RerankSettings
from jobs.recsys.diversity import (
    EXPOSURE_ROUND_USERS,
    FLAGS,
    CatalogArrays,
    DiversityError,
    calibration_kl,
    history_genre_mix,
    longtail_scores,
    select_shelves,
    spread,
    underrepresented_groups,
)

OFF = RerankSettings(
    mmr_lambda=1.0, longtail_weight=0.0, max_genre_share=1.0, min_underrepresented_share=0.0,
    max_titles_per_provider=0, calibration_max_kl=0.0, explore_slots=0, exposure_weight=0.0,
)
# items 0-3: genre A; 4: B; 5: A and B. Providers: 0-2 "p0", 3-5 "p1". Item 5 is
# under-represented. Popularity falls with the id (item 5 is the long tail).
GENRES = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=bool)
CATALOG = CatalogArrays(
    genres=GENRES,
    provider=np.array([0, 0, 0, 1, 1, 1]),
    underrepresented=np.array([False, False, False, False, False, True]),
    longtail=longtail_scores(np.array([60.0, 50, 40, 30, 20, 10])),
)
CANDIDATES = np.array([[0, 1, 2, 3, 4, 5]])
SCORES = np.array([[6.0, 5, 4, 3, 2, 1]])


def shelve(k, candidates=CANDIDATES, scores=SCORES, engaged=None, history=None, **settings):
    candidates = np.asarray(candidates)
    engaged = np.zeros(candidates.shape, dtype=bool) if engaged is None else np.asarray(engaged)
    history = np.zeros((len(candidates), 2)) if history is None else np.asarray(history, dtype=float)
    shelves = select_shelves(candidates, scores, engaged, history, CATALOG, dataclasses.replace(OFF, **settings), k)
    return shelves.items.tolist(), shelves.flag_strings(), shelves


def test_everything_off_keeps_the_model_order():
    assert shelve(4)[:2] == ([[0, 1, 2, 3]], [None])


def test_max_genre_share_counts_every_genre_of_a_title():
    # k 4, share 0.5: at most 2 titles carrying A (item 5 carries A too) -> 0, 1, then B-only 4,
    # then nothing without A is left but the cap is full: the greedy must relax and flag it
    items, flags, _ = shelve(4, max_genre_share=0.5)
    assert items == [[0, 1, 4, 2]]
    assert flags == ["max_genre_share"]
    # with a B title to spare it is satisfied: candidates 0, 1, 4, 5(A, B), 2 at share 0.75 (cap 3)
    items, flags, _ = shelve(4, max_genre_share=0.75)
    assert items == [[0, 1, 2, 4]] and flags == [None]


def test_min_underrepresented_share_reserves_positions_when_the_candidates_allow():
    # k 3, share 0.3 -> 1 title of an under-represented group: item 5, the lowest scored
    items, flags, _ = shelve(3, min_underrepresented_share=0.3)
    assert items == [[0, 1, 5]] and flags == [None]
    # without item 5 among the candidates: plain top-3, flagged
    items, flags, _ = shelve(3, candidates=[[0, 1, 2, 3, 4, -1]], min_underrepresented_share=0.3)
    assert items == [[0, 1, 2]] and flags == ["min_underrepresented_share"]


def test_max_titles_per_provider():
    # at most 2 of p0 (items 0-2): 0, 1, then 3 (p1) before 2
    items, flags, _ = shelve(4, max_titles_per_provider=2)
    assert items == [[0, 1, 3, 4]] and flags == [None]
    # only p0 candidates: infeasible, filled and flagged
    items, flags, _ = shelve(3, candidates=[[0, 1, 2, -1, -1, -1]], max_titles_per_provider=2)
    assert items == [[0, 1, 2]] and flags == ["max_per_provider"]


def test_calibration_pulls_the_genre_mix_to_the_history():
    history = [[0.0, 1.0]]  # the user watched only B
    # the top-2 (A, A) has KL = log(1 / 0.01) = 4.6; the calibration-first pass takes B titles
    items, flags, shelves = shelve(2, history=history, calibration_max_kl=1.0)
    assert sorted(items[0]) == [4, 5] and flags == [None]
    mix = CATALOG.genre_share[shelves.items[0]].mean(axis=0)
    assert calibration_kl(np.array(history[0]), mix, 0.01) <= 1.0
    # no B title among the candidates: the bound cannot be met -> flagged, model order kept
    items, flags, _ = shelve(2, candidates=[[0, 1, 2, 3, -1, -1]], history=history, calibration_max_kl=1.0)
    assert items == [[0, 1]] and flags == ["calibration"]


def test_users_without_genre_history_are_not_calibrated():
    assert shelve(2, calibration_max_kl=0.01)[:2] == ([[0, 1]], [None])


def test_explore_slot_takes_an_unengaged_long_tail_title_of_a_new_genre():
    history = [[1.0, 0.0]]  # watched A only: B is new; item 5 (A, B) is half new, the longest tail
    engaged = [[False, False, False, False, True, False]]  # ... and item 4 was watched
    items, flags, shelves = shelve(3, engaged=engaged, history=history, explore_slots=1)
    assert items == [[0, 1, 5]] and flags == [None]
    assert shelves.explore.tolist() == [[False, False, True]]
    # every candidate engaged with: the slot is filled by the model order and flagged
    items, flags, shelves = shelve(2, engaged=np.ones((1, 6), dtype=bool), history=history, explore_slots=1)
    assert items == [[0, 1]] and flags == ["explore"] and not shelves.explore.any()


def test_mmr_lambda_trades_score_for_a_new_genre():
    # step 2 at lambda 0.5: item 1 -> 0.5 * 0.8 - 0 = 0.4; item 4 -> 0.5 * 0.2 + 0.5 * 1 = 0.6
    items, _, _ = shelve(2, mmr_lambda=0.5)
    assert items == [[0, 4]]
    assert shelve(2, mmr_lambda=0.9)[0] == [[0, 1]]


def test_each_user_is_independent_and_padding_stays_out():
    candidates = np.array([[0, 1, 2, 3, 4, 5], [4, 0, -1, -1, -1, -1]])
    scores = np.array([[6.0, 5, 4, 3, 2, 1], [2.0, 1, 0, 0, 0, 0]])
    items, flags, _ = shelve(3, candidates=candidates, scores=scores, min_underrepresented_share=0.3)
    assert items == [[0, 1, 5], [4, 0, -1]]
    # the second user's 2 candidates hold no under-represented title: flagged
    assert flags == [None, "min_underrepresented_share"]


def test_flags_are_the_known_codes():
    _, _, shelves = shelve(3, candidates=[[0, 1, 2, -1, -1, -1]], max_titles_per_provider=1)
    assert shelves.flags.shape == (1, len(FLAGS)) and shelves.flag_strings() == ["max_per_provider"]


def test_underrepresented_groups_compare_consumption_with_the_catalog():
    titles = {"major": 60, "indie": 30, "community": 10, None: 5}
    consumption = {"major": 82.0, "indie": 15.0, "community": 3.0}
    # shares of consumption 0.82 / 0.15 / 0.03 vs catalog 0.6 / 0.3 / 0.1
    assert underrepresented_groups(titles, consumption, 0.8, 0.0) == {"indie", "community"}
    assert underrepresented_groups(titles, consumption, 0.4, 0.0) == {"community"}
    assert underrepresented_groups(titles, consumption, 0.4, 0.2) == {"indie", "community"}
    assert underrepresented_groups({}, consumption, 0.8, 0.1) == set()


def test_history_mix_and_longtail():
    mix = history_genre_mix(np.array([0, 0, 1]), np.array([4, 5, 0]), np.array([1.0, 2.0, 1.0]), 3, CATALOG.genre_share)
    np.testing.assert_allclose(mix, [[1 / 3, 2 / 3], [1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(longtail_scores(np.array([5.0, 1.0, 5.0, 3.0])), [1 / 6, 1.0, 1 / 6, 2 / 3])


def test_bad_inputs_are_refused():
    with pytest.raises(DiversityError, match="engaged shape"):
        select_shelves(CANDIDATES, SCORES, np.zeros((1, 2), bool), np.zeros((1, 2)), CATALOG, OFF, 2)
    with pytest.raises(DiversityError, match="history_mix shape"):
        select_shelves(CANDIDATES, SCORES, np.zeros((1, 6), bool), np.zeros((1, 3)), CATALOG, OFF, 2)
    with pytest.raises(DiversityError, match="catalog has 6"):
        select_shelves(np.array([[9]]), None, np.zeros((1, 1), bool), np.zeros((1, 2)), CATALOG, OFF, 1)


def test_explore_spread_is_seeded_per_user_and_title():
    items = np.arange(50)[None, :].repeat(3, axis=0)
    values = spread(np.array([7, 7, -3]), items)
    assert ((values >= 0) & (values < 1)).all()
    np.testing.assert_array_equal(values[0], values[1])  # same seed, same numbers
    assert not np.allclose(values[0], values[2])
    # with a strong spread, users with the same candidates get different explore titles
    candidates = np.array([[0, 1, 2, 3, 4, 5]] * 8)
    shelves = select_shelves(candidates, None, np.zeros((8, 6), bool), np.zeros((8, 2)), CATALOG,
                             dataclasses.replace(OFF, explore_slots=1, explore_spread=10.0), 2)
    assert (shelves.items[:, 0] == 0).all() and len(set(shelves.items[:, 1].tolist())) > 1


def crowd(rounds: int, **settings):
    """``rounds`` rounds of users who all have the same near-tied candidates 0-5 (scores
    6.0, 5.9, ..., 5.5): without exposure every shelf would be the same."""
    n = EXPOSURE_ROUND_USERS * rounds
    candidates = np.array([[0, 1, 2, 3, 4, 5]] * n)
    scores = np.array([[6.0, 5.9, 5.8, 5.7, 5.6, 5.5]] * n)
    shelves = select_shelves(candidates, scores, np.zeros((n, 6), bool), np.zeros((n, 2)), CATALOG,
                             dataclasses.replace(OFF, **settings), 2)
    return shelves


def test_exposure_moves_later_users_to_titles_earlier_shelves_do_not_hold():
    plain = crowd(2)
    assert (plain.items == [0, 1]).all()
    assert plain.exposure.tolist() == [64, 64, 0, 0, 0, 0]  # shelves holding each title
    spread_out = crowd(2, exposure_weight=1.0)
    first, second = spread_out.items[:EXPOSURE_ROUND_USERS], spread_out.items[EXPOSURE_ROUND_USERS:]
    # the first round sees no exposure yet: the model's order
    assert (first == [0, 1]).all()
    # the next round: 0 and 1 are held by 32 shelves each (freshness ~0), so the best fresh
    # titles 2 and 3 win (relevance 0.6 + 1 > 1 + 0)
    assert (second == [2, 3]).all()
    assert spread_out.exposure.tolist() == [32, 32, 32, 32, 0, 0]


def test_exposure_counts_are_taken_and_returned():
    candidates, engaged, history = CANDIDATES, np.zeros((1, 6), bool), np.zeros((1, 2))
    settings = dataclasses.replace(OFF, exposure_weight=1.0)
    held = np.array([50.0, 50, 0, 0, 0, 0])  # e.g. the previous Arrow batches of the partition
    shelves = select_shelves(candidates, SCORES, engaged, history, CATALOG, settings, 2, exposure=held)
    # relevance 1, 0.8 for items 0, 1 against 0.6 + 1 and 0.4 + 1 for the fresh items 2, 3
    assert shelves.items.tolist() == [[2, 3]]
    assert shelves.exposure.tolist() == [50, 50, 1, 1, 0, 0] and held.tolist() == [50, 50, 0, 0, 0, 0]
    with pytest.raises(DiversityError, match="exposure shape"):
        select_shelves(candidates, SCORES, engaged, history, CATALOG, settings, 2, exposure=np.zeros(3))


def test_explore_slots_go_to_titles_no_shelf_holds_yet():
    # one explore slot, no exposure weight in the ordinary positions: the first round's explore
    # picks (long tail first: item 5) make later rounds explore other titles
    shelves = crowd(3, explore_slots=1)
    assert (shelves.items[:, 0] == 0).all()
    explored = [set(shelves.items[r * EXPOSURE_ROUND_USERS:(r + 1) * EXPOSURE_ROUND_USERS, 1].tolist())
                for r in range(3)]
    assert explored[0] == {5}
    assert 5 not in explored[1] and explored[1].isdisjoint(explored[2])
