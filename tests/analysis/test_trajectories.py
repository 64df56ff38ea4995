import numpy as np
import pytest
import torch

from modescape.analysis import trajectories as tj
from modescape.errors import ModescapeError


def two_trajectory_groups(
    per_group: int = 12, dim: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two groups of random-walk trajectories far apart: [2·per_group, dim] points, group ids."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, dim))
    centres[1, :] = 5.0
    pts, group = [], []
    for g in range(2):
        for _ in range(2):  # two trajectories per group
            walk = centres[g] + np.cumsum(rng.normal(scale=0.1, size=(per_group // 2, dim)), 0)
            pts.append(walk)
            group += [g] * (per_group // 2)
    return np.concatenate(pts), np.array(group)


def test_fixed_subset():
    assert tj.fixed_subset(100, 5).tolist() == [0, 1, 2, 3, 4]
    a = tj.fixed_subset(1000, 50, seed=3, mode="random")
    assert np.array_equal(a, tj.fixed_subset(1000, 50, seed=3, mode="random"))
    assert not np.array_equal(a, tj.fixed_subset(1000, 50, seed=4, mode="random"))
    assert len(set(a.tolist())) == 50 and np.all(np.diff(a) > 0) and a.max() < 1000
    with pytest.raises(ModescapeError, match="allowed: first, random"):
        tj.fixed_subset(10, 5, mode="last")
    with pytest.raises(ModescapeError, match=r"\[1, 10\]"):
        tj.fixed_subset(10, 11)


def test_function_space_points():
    probs = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    pts = tj.function_space_points(torch.from_numpy(probs), [0, 2])
    assert pts.shape == (3, 4)
    assert pts[1].tolist() == [8, 9, 12, 13]  # model 1, examples 0 and 2, both classes
    assert tj.function_space_points(probs[None]).shape == (1, 3, 8)


def test_pca_matches_numpy_svd():
    x, _ = two_trajectory_groups(seed=1)
    emb = tj.embed_trajectories(x, method="pca")
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    # Components are defined up to sign.
    for j in range(2):
        sign = np.sign(expected[:, j] @ emb.coords[:, j])
        np.testing.assert_allclose(emb.coords[:, j], sign * expected[:, j], atol=1e-9)
    ratio = s[:2] ** 2 / np.sum(s**2)
    np.testing.assert_allclose(emb.settings["explained_variance_ratio"], ratio, rtol=1e-9)


def test_tsne_reproducible_and_settings_recorded():
    x, _ = two_trajectory_groups(seed=2)
    a = tj.embed_trajectories(x, seed=7, perplexity=5.0, max_iter=300)
    b = tj.embed_trajectories(x, seed=7, perplexity=5.0, max_iter=300)
    assert a.coords.shape == (len(x), 2)
    np.testing.assert_array_equal(a.coords, b.coords)
    s = a.settings
    assert s["perplexity"] == 5.0 and not s["perplexity_clamped"]
    assert s["method"] == "tsne" and s["tsne_method"] == "barnes_hut"
    assert s["init"] == "random" and s["metric"] == "euclidean" and s["seed"] == 7
    assert s["learning_rate"] == 200.0 and s["preset"] == "custom"  # perplexity 5, 300 iterations
    assert s["max_iter"] == 300 and "sklearn_version" in s and s["n_points"] == len(x)


def test_tsne_defaults_are_the_notebooks():
    assert tj.PAPER_TSNE == {
        "perplexity": 30.0,
        "learning_rate": 200.0,
        "init": "random",
        "max_iter": 1000,
        "early_exaggeration": 12.0,
        "metric": "euclidean",
    }
    x, _ = two_trajectory_groups(per_group=50, seed=1)  # 100 points: 3·30 + 1 fits
    emb = tj.embed_trajectories(x, seed=0)
    s = emb.settings
    assert s["preset"] == "paper" and s["perplexity"] == 30.0 and not s["perplexity_clamped"]
    assert {k: s[k] for k in tj.PAPER_TSNE} == tj.PAPER_TSNE


@pytest.mark.parametrize(
    ("k", "p", "used"), [(33, 30.0, 32 / 3), (91, 30.0, 30.0), (90, 30.0, 89 / 3), (3, 30.0, 1.0)]
)
def test_perplexity_clamp_as_documented(k, p, used):
    # Barnes–Hut needs 3p + 1 neighbours among K points (and p < K follows)
    assert tj.clamp_perplexity(p, k) == pytest.approx(used)
    assert tj.clamp_perplexity(p, k) < k


def test_degenerate_or_small_embeddings_are_flagged():
    rng = np.random.default_rng(0)
    spread = rng.uniform(-10, 10, (60, 2))
    assert tj.tsne_warnings(spread) == ()
    few = tj.tsne_warnings(spread[:40])
    assert len(few) == 1 and "40 points" in few[0]
    collapsed = tj.tsne_warnings(0.05 * spread)  # span ≈ 1 unit
    assert len(collapsed) == 1 and "degenerate" in collapsed[0]
    x, _ = two_trajectory_groups(per_group=6, seed=3)  # 12 points
    emb = tj.embed_trajectories(x, max_iter=250)
    assert emb.lead_with_pca and emb.settings["lead_with_pca"]
    assert any("12 points" in w for w in emb.settings["warnings"])


def test_tsne_perplexity_clamped_below_point_count():
    x, _ = two_trajectory_groups(per_group=6, seed=3)  # 12 points
    emb = tj.embed_trajectories(x, perplexity=30.0, max_iter=250)
    assert emb.settings["perplexity"] == pytest.approx(11 / 3)
    assert emb.settings["perplexity_requested"] == 30.0 and emb.settings["perplexity_clamped"]
    assert np.all(np.isfinite(emb.coords))


def test_tsne_keeps_separated_groups_apart():
    x, group = two_trajectory_groups(per_group=20, seed=4)
    coords = tj.embed_trajectories(x, perplexity=8.0, seed=0, max_iter=500).coords
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.all(group[d.argmin(1)] == group)  # every nearest neighbour is in its own group
    # ...and a line separates the groups: projected on the line between the group centres, every
    # point of group 0 comes before every point of group 1.
    centres = np.array([coords[group == g].mean(0) for g in (0, 1)])
    proj = coords @ (centres[1] - centres[0])
    assert proj[group == 0].max() < proj[group == 1].min()


def test_validation():
    with pytest.raises(ModescapeError, match="allowed: tsne, pca"):
        tj.embed_trajectories(np.zeros((5, 2)), method="umap")
    with pytest.raises(ModescapeError, match="at least 3"):
        tj.embed_trajectories(np.zeros((2, 2)))
