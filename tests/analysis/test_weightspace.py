import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances
from torch import nn

from modescape.analysis import weightspace as ws
from modescape.errors import ModescapeError


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 3, 3),
        nn.BatchNorm1d(3),
        nn.ReLU(),
        nn.Conv1d(3, 2, 3, bias=False),
        nn.Flatten(),
        nn.Linear(2 * 6, 4),
    )


def test_select_parameter_names():
    net = small_net()
    assert ws.select_parameter_names(net, "all") == [n for n, _ in net.named_parameters()]
    assert ws.select_parameter_names(net, "kernels_bn") == [
        "0.weight",
        "1.weight",
        "3.weight",
        "5.weight",
    ]
    assert ws.select_parameter_names(net, "no_bn_bias") == ["0.weight", "3.weight", "5.weight"]
    names = ws.select_parameter_names(net, "all")
    assert all("running" not in n and "num_batches" not in n for n in names)
    assert set(names) <= set(net.state_dict())
    net[5].bias.requires_grad_(False)  # frozen parameters are not trainable, so not in "all"
    assert "5.bias" not in ws.select_parameter_names(net, "all")
    with pytest.raises(ModescapeError, match="allowed: all, kernels_bn, no_bn_bias"):
        ws.select_parameter_names(net, "kernels")


def test_unknown_module_type_is_an_error_not_a_silent_drop():
    net = nn.Sequential(nn.Linear(4, 4), nn.PReLU())
    with pytest.raises(ModescapeError, match="PReLU"):
        ws.select_parameter_names(net, "kernels_bn")
    assert ws.select_parameter_names(net, "all") == ["0.weight", "0.bias", "1.weight"]


def test_kernels_bn_treats_layernorm_and_groupnorm_as_norms():
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(8))
    assert ws.select_parameter_names(net, "kernels_bn") == ["0.weight", "1.weight", "3.weight"]
    assert ws.select_parameter_names(net, "no_bn_bias") == ["0.weight"]


def test_flatten_order_and_dtype():
    net = small_net()
    sd = net.state_dict()
    names = ws.select_parameter_names(net, "all")
    theta = ws.flatten(sd, names)
    assert theta.dtype == torch.float64
    expected = torch.nn.utils.parameters_to_vector(net.parameters()).double()
    assert torch.equal(theta, expected)
    with pytest.raises(ModescapeError, match="lacks"):
        ws.flatten(sd, [*names, "nope"])


def test_cosine_and_distance_against_sklearn():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 1000)).astype(np.float32)
    W[1] = 3.0 * W[0]  # scaled copy
    np.testing.assert_allclose(
        ws.cosine_matrix(W), cosine_similarity(W.astype(np.float64)), atol=1e-12
    )
    np.testing.assert_allclose(
        ws.distance_matrix(torch.from_numpy(W)),
        euclidean_distances(W.astype(np.float64)),
        rtol=1e-10,
        atol=1e-10,
    )
    cos = ws.cosine_matrix(W)
    assert cos[0, 1] == pytest.approx(1.0, abs=1e-15) and abs(cos[2, 3]) < 0.15


def test_hand_cases():
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    cos = ws.cosine_matrix(W)
    assert cos[0, 1] == 0.0 and cos[0, 2] == -1.0 and cos[0, 3] == pytest.approx(2**-0.5)
    dist = ws.distance_matrix(W)
    assert dist[0, 1] == pytest.approx(5**0.5) and dist[0, 2] == pytest.approx(4.0)
    assert np.all(np.diag(dist) == 0)


def test_gram_blockwise_equals_direct_and_precision():
    rng = np.random.default_rng(1)
    W = torch.from_numpy(rng.normal(size=(5, 777)).astype(np.float32))
    direct = W.double() @ W.double().T
    chunks = [W[:, :100], W[:, 100:101], W[:, 101:]]
    np.testing.assert_allclose(
        ws.gram_blockwise(chunks, max_columns=64), direct.numpy(), rtol=1e-13
    )
    # Two nearby points far from the origin: float32 Gram entries cancel to garbage, float64 not.
    base = torch.from_numpy(rng.normal(size=200_000).astype(np.float32)) * 10
    pair = torch.stack([base, base + 1e-3 * torch.ones_like(base)])
    true = float(torch.linalg.vector_norm(pair[0].double() - pair[1].double()))
    assert ws.distance_matrix(pair)[0, 1] == pytest.approx(true, rel=1e-6)


def test_trajectory_matrices_slices():
    rng = np.random.default_rng(2)
    M, E, P = 3, 4, 50
    W = torch.from_numpy(rng.normal(size=(M, E, P)))
    t = ws.trajectory_matrices(W)
    flat = W.reshape(M * E, P).numpy()
    full = cosine_similarity(flat)
    np.testing.assert_allclose(t.full(), full, atol=1e-12)
    for m in range(M):
        np.testing.assert_allclose(t.within()[m], cosine_similarity(W[m].numpy()), atol=1e-12)
        for e in range(E):
            expected = np.linalg.norm(W[m, e] - W[m, 0])
            assert t.distance_from_start()[m, e] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(t.across(), cosine_similarity(W[:, -1].numpy()), atol=1e-12)
    np.testing.assert_allclose(
        t.across("distance", epoch=1), euclidean_distances(W[:, 1].numpy()), atol=1e-10
    )
    np.testing.assert_allclose(t.norms, np.linalg.norm(W.numpy(), axis=2))
    with pytest.raises(ModescapeError, match="allowed: cosine, distance"):
        t.within("cos")


def test_trajectory_matrices_from_state_dicts_matches_flat():
    torch.manual_seed(0)
    snaps = [[small_net().state_dict() for _ in range(3)] for _ in range(2)]
    names = ws.select_parameter_names(small_net(), "kernels_bn")
    t = ws.trajectory_matrices(snaps, names, max_columns=5)
    W = torch.stack([ws.stack_flat(member, names) for member in snaps])
    ref = ws.trajectory_matrices(W)
    np.testing.assert_allclose(t.cosine, ref.cosine, atol=1e-12)
    np.testing.assert_allclose(t.distance, ref.distance, atol=1e-10)
    with pytest.raises(ModescapeError, match="different snapshot counts"):
        ws.trajectory_matrices([snaps[0], snaps[1][:2]], names)


def test_average_state_dicts():
    nets = [small_net() for _ in range(3)]
    for i, net in enumerate(nets):
        net[1].num_batches_tracked.fill_(10 * (i + 1))
    avg = ws.average_state_dicts([net.state_dict() for net in nets])
    for key, value in avg.items():
        if key.endswith("num_batches_tracked"):
            assert value.item() == 30 and value.dtype == torch.long
        else:
            expected = sum(net.state_dict()[key].double() for net in nets) / 3
            assert value.dtype == torch.float32
            torch.testing.assert_close(value, expected.float())
    merged = small_net()
    merged.load_state_dict(avg)  # keys and shapes fit the architecture
    with pytest.raises(ModescapeError, match="different keys"):
        ws.average_state_dicts([nets[0].state_dict(), {"x": torch.zeros(1)}])
