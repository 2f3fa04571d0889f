"""Metrics against values computed by hand and scikit-learn's own macro average."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.train.metrics import tag_metrics


def test_hand_computed_auc():
    # tag a: scores rank positives (0.9, 0.4) against negatives (0.8, 0.1): pairs won 3 of 4 -> 0.75.
    # AP: ranking 0.9(+) 0.8(-) 0.4(+) 0.1(-): precision at the positives 1/1 and 2/3 -> (1 + 2/3) / 2.
    # tag b: perfect ranking -> 1.0 and 1.0. tag c: no positive -> excluded.
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.2, 0.5], [0.8, 0.9, 0.5], [0.4, 0.7, 0.5], [0.1, 0.1, 0.5]])
    m = tag_metrics(y, s, ["a", "b", "c"])
    assert m["per_tag"]["a"]["roc_auc"] == pytest.approx(0.75)
    assert m["per_tag"]["a"]["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["per_tag"]["b"] == {"roc_auc": 1.0, "pr_auc": 1.0, "positives": 2}
    assert m["roc_auc"] == pytest.approx((0.75 + 1.0) / 2)
    assert m["pr_auc"] == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    assert m["excluded_tags"] == ["c"] and m["n_tags"] == 2


def test_macro_equals_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 10)) < 0.2).astype(int)
    s = rng.random((200, 10)) + 0.5 * y
    m = tag_metrics(y, s, [str(i) for i in range(10)])
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s, average="macro"))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s, average="macro"))


def test_all_positive_tag_is_excluded_and_bad_scores_refused():
    y = np.array([[1, 1], [1, 0], [1, 1]])
    s = np.array([[0.5, 0.9], [0.4, 0.1], [0.3, 0.8]])
    assert tag_metrics(y, s, ["always", "x"])["excluded_tags"] == ["always"]
    with pytest.raises(ValueError, match="NaN"):
        tag_metrics(y, np.full((3, 2), np.nan), ["always", "x"])
    with pytest.raises(ValueError, match="no tag"):
        tag_metrics(np.ones((3, 1)), np.ones((3, 1)), ["always"])


@pytest.mark.parametrize("bad", [np.nan, 2.0, -1.0])
def test_targets_that_are_not_multi_hot_are_refused_not_read_as_a_tag_to_exclude(bad):
    # a NaN or a 2 among the targets is a broken label file or loader, not a tag without positives
    y = np.array([[1.0, 0.0], [0.0, bad], [1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="0 or 1"):
        tag_metrics(y, np.linspace(0, 1, 8).reshape(4, 2), ["a", "b"])


def test_tags_excluded_between_scored_ones_leave_each_tag_its_own_scores_and_counts():
    # 5 clips, tags: "never" (no positive), "a", "always" (no negative), "b", "silent" (no positive).
    # a: positives score 0.9, 0.6 against negatives 0.7, 0.2, 0.1: pairs won 5 of 6; AP: ranking
    #    0.9(+) 0.7(-) 0.6(+): precision 1/1 and 2/3. b: 3 positives, perfectly ranked: 1.0 and 1.0.
    y = np.array([[0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 1, 0, 0]])
    s = np.array([[0.5, 0.9, 0.5, 0.2, 0.5], [0.5, 0.7, 0.5, 0.8, 0.5], [0.5, 0.6, 0.5, 0.9, 0.5],
                  [0.5, 0.2, 0.5, 0.7, 0.5], [0.5, 0.1, 0.5, 0.3, 0.5]])
    m = tag_metrics(y, s, ["never", "a", "always", "b", "silent"])
    assert m["excluded_tags"] == ["never", "always", "silent"]
    assert m["per_tag"] == {"a": {"roc_auc": pytest.approx(5 / 6), "pr_auc": pytest.approx((1 + 2 / 3) / 2),
                                  "positives": 2},
                            "b": {"roc_auc": 1.0, "pr_auc": 1.0, "positives": 3}}
    assert m["n_tags"] == 2 and m["roc_auc"] == pytest.approx((5 / 6 + 1) / 2)


def test_a_perfectly_ranked_tags_average_precision_is_one_where_sklearns_sum_rounds_above_it():
    """scikit-learn's average precision sums recall steps times precisions in floating point: here a tag
    with 21 positives of 75 clips, every positive scored above every negative, comes to 1 + 2**-52. The
    result holds 1, an AUC (a report rejected the run's result as invalid, a grid counted it done)."""
    y = np.zeros((75, 2), dtype=int)
    y[:21, 0], y[:20, 1] = 1, 1
    s = np.random.RandomState(0).rand(75, 2)
    s[:, 0] += y[:, 0]
    assert average_precision_score(y[:, 0], s[:, 0]) > 1  # scikit-learn's own sum
    m = tag_metrics(y, s, ["a", "b"])
    assert m["per_tag"]["a"]["pr_auc"] == 1.0 and m["per_tag"]["a"]["roc_auc"] == 1.0
    assert m["pr_auc"] <= 1.0
