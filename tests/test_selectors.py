"""Selectors: top-k with seeded ties, k-means/k-center diversity, BADGE seeding, density."""

import numpy as np
import pytest
import scipy.sparse as sp

from labelwise.strategies import selectors


def test_top_k_returns_highest_best_first():
    u = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    np.testing.assert_array_equal(selectors.top_k(u, 3, np.random.default_rng(0)), [1, 3, 2])


def test_top_k_breaks_ties_at_random_but_reproducibly():
    u = np.zeros(100)
    a = selectors.top_k(u, 5, np.random.default_rng(1))
    b = selectors.top_k(u, 5, np.random.default_rng(1))
    c = selectors.top_k(u, 5, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert set(a.tolist()) != set(c.tolist())
    # Not simply the first indices, as a stable sort would give.
    picks = {tuple(sorted(selectors.top_k(u, 5, np.random.default_rng(s)))) for s in range(10)}
    assert len(picks) > 5


def test_top_k_keeps_strict_winners_and_samples_among_ties():
    u = np.array([5.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    for seed in range(20):
        picks = selectors.top_k(u, 3, np.random.default_rng(seed))
        assert picks[0] == 0
        assert set(picks[1:].tolist()) <= {1, 2, 3, 4}


def test_top_k_bounds():
    with pytest.raises(ValueError, match="between 0 and 3"):
        selectors.top_k(np.ones(3), 4, np.random.default_rng(0))
    assert len(selectors.top_k(np.ones(3), 0, np.random.default_rng(0))) == 0


def _blobs(rng, centers=4, per=30):
    c = rng.normal(scale=10, size=(centers, 2))
    return np.concatenate([c[i] + rng.normal(scale=0.3, size=(per, 2)) for i in range(centers)])


def test_weighted_kmeans_spreads_picks_over_clusters():
    rng = np.random.default_rng(0)
    X = _blobs(rng)
    picks = selectors.weighted_kmeans(X, np.ones(len(X)), 4, np.random.default_rng(0))
    assert len(set((picks // 30).tolist())) == 4
    # whereas top-k on equal utilities would be arbitrary; uniqueness always holds
    assert len(set(picks.tolist())) == 4


def test_weighted_kmeans_handles_duplicate_points():
    X = np.zeros((10, 3))
    picks = selectors.weighted_kmeans(X, np.arange(10.0), 3, np.random.default_rng(0))
    assert len(set(picks.tolist())) == 3


def test_kcenter_picks_far_points_first():
    X = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [5.0, 0.0]])
    labeled = np.array([[0.0, 0.0]])
    picks, gaps = selectors.kcenter_greedy(X, labeled, 2, np.random.default_rng(0))
    assert picks.tolist() == [2, 3]
    np.testing.assert_allclose(gaps, [10.0, 5.0])


def test_kcenter_without_labeled_rows_starts_anywhere_and_covers():
    rng = np.random.default_rng(0)
    X = _blobs(rng)
    picks, _ = selectors.kcenter_greedy(X, np.empty((0, 2)), 4, np.random.default_rng(0))
    assert len(set((picks // 30).tolist())) == 4


def test_kcenter_works_on_sparse_rows():
    X = sp.csr_matrix(np.eye(5))
    picks, _ = selectors.kcenter_greedy(
        X, sp.csr_matrix(np.eye(5)[:1]), 2, np.random.default_rng(0)
    )
    assert 0 not in picks.tolist()


def test_kmeans_pp_factored_matches_explicit_embeddings():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 3))
    H = rng.normal(size=(50, 4))
    G = np.einsum("ik,ij->ikj", A, H).reshape(50, -1)
    picks = selectors.kmeans_pp_factored(A, H, 5, np.random.default_rng(7))
    # First pick is the longest gradient.
    assert picks[0] == int(np.argmax(np.linalg.norm(G, axis=1)))
    assert len(set(picks.tolist())) == 5
    # Same result with a sparse H.
    sparse_picks = selectors.kmeans_pp_factored(A, sp.csr_matrix(H), 5, np.random.default_rng(7))
    np.testing.assert_array_equal(picks, sparse_picks)


def test_density_weights_prefer_typical_points():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(200, 2)), [[25.0, 25.0]]])
    w = selectors.density_weights(X, np.random.default_rng(0))
    assert w[-1] < np.median(w[:-1])
    assert ((w > 0) & (w <= 1)).all()


def test_weighted_kmeans_utility_representative_is_the_best_of_each_cluster():
    rng = np.random.default_rng(0)
    X = _blobs(rng)
    u = rng.random(len(X))
    picks = selectors.weighted_kmeans(X, u, 4, np.random.default_rng(0), representative="utility")
    clusters = picks // 30
    assert len(set(clusters.tolist())) == 4
    for p, c in zip(picks, clusters, strict=True):
        assert u[p] == u[c * 30 : (c + 1) * 30].max()
    # A batch of one is plain top-1.
    one = selectors.weighted_kmeans(X, u, 1, np.random.default_rng(0), representative="utility")
    assert one.tolist() == [int(np.argmax(u))]


@pytest.mark.parametrize(
    "case",
    ["few values", "distinct", "all equal", "rare top values", "zeros then a ramp", "outliers"],
)
@pytest.mark.parametrize("k", [1, 7, 100, 1000, 5000])
def test_the_kth_largest_of_a_big_array_is_exact(case, k):
    from labelwise.strategies.selectors import _kth_largest

    rng = np.random.default_rng(0)
    vals = np.array([0.0, 0.5, 0.67])
    u = {
        "few values": vals[rng.choice(3, size=300_000, p=[0.8, 0.15, 0.05])],
        "distinct": rng.random(300_000),
        "all equal": np.zeros(100_000),
        "rare top values": vals[rng.choice(3, size=300_000, p=[0.9999, 0.00005, 0.00005])],
        "zeros then a ramp": np.r_[np.zeros(200_000), np.arange(50.0)],
        "outliers": np.r_[np.arange(70_000.0), np.full(10, 1e9)],
    }[case]
    assert _kth_largest(u, k) == np.partition(u, len(u) - k)[len(u) - k]
