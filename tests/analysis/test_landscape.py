import copy

import pytest
import torch
import torch.nn.functional as F

from modescape.analysis import geometry, landscape, weightspace
from modescape.errors import ModescapeError
from modescape.models.architectures import build_model


def _model(in_shape=(1, 40), arch="smallcnn", variant="paper"):
    torch.manual_seed(0)
    return build_model(arch, variant, in_shape, 10)


def _direct(model, flat, x, y):
    """Loss, accuracy and predictions of one weight vector, through the model's own forward."""
    net = copy.deepcopy(model).eval()
    torch.nn.utils.vector_to_parameters(flat, net.parameters())
    with torch.no_grad():
        logits = net(x)
    pred = logits.argmax(1)
    return F.cross_entropy(logits, y).item(), (pred == y).float().mean().item(), pred


def _commensurate_anchors(model, seed=0):
    """o, θ1, θ2 at plane coordinates (0,0), (2,0), (1,2): all on a 13-point grid, margin 0.25."""
    g = torch.Generator().manual_seed(seed)
    o = weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    q, _ = torch.linalg.qr(torch.randn(o.numel(), 2, generator=g, dtype=torch.float64))
    e1, e2 = q[:, 0], q[:, 1]
    t1 = (o.double() + 2 * e1).float()
    t2 = (o.double() + e1 + 2 * e2).float()
    return o, t1, t2


def test_plane_axes_orthonormal_and_reproduce_anchors():
    g = torch.Generator().manual_seed(3)
    o, t1, t2 = torch.randn(3, 500, generator=g, dtype=torch.float64)
    u, v, coords = geometry.plane_axes(o, t1, t2)
    gram = torch.stack([u, v]) @ torch.stack([u, v]).T
    torch.testing.assert_close(gram, torch.eye(2, dtype=torch.float64), atol=1e-12, rtol=0)
    for point, (a, b) in zip((o, t1, t2), coords.double()):
        torch.testing.assert_close(o + a * u + b * v, point, atol=1e-6, rtol=0)
    assert coords[2, 1] > 0
    torch.testing.assert_close(
        geometry.project_onto_plane(torch.stack([o, t1, t2]), o, u, v), coords.double()
    )
    # A point off the plane projects to the coordinates of its foot.
    off = (
        t1
        + 3.0
        * torch.linalg.qr(
            torch.stack([u, v, torch.randn(500, generator=g, dtype=torch.float64)], 1)
        )[0][:, 2]
    )
    torch.testing.assert_close(
        geometry.project_onto_plane(off[None], o, u, v)[0], coords[1].double(), atol=1e-9, rtol=0
    )


def test_degenerate_planes_raise():
    o, d = torch.zeros(10), torch.randn(10)
    with pytest.raises(ModescapeError, match="collinear"):
        geometry.plane_axes(o, o + d, o + 2.5 * d)
    with pytest.raises(ModescapeError, match="collinear"):
        geometry.plane_axes(o, o + d, o - d + 1e-9 * torch.randn(10))
    with pytest.raises(ModescapeError, match="coincides"):
        geometry.plane_axes(o + d, o + d, torch.randn(10))
    geometry.plane_axes(o, o + d, o + d + 1e-3 * torch.randn(10))  # clearly not collinear


def test_plane_grid_covers_anchors_with_margins_and_anchors_are_nodes():
    coords = torch.tensor([[0.0, 0.0], [4.0, 0.0], [-1.0, 2.0]])
    g = geometry.anchored_grid(coords, resolution=11, margin=0.1)
    a, b = g.a_values, g.b_values
    assert (a, b) == (a, b) and len(a) >= 11 and len(b) >= 11
    assert torch.equal(torch.stack(geometry.plane_grid(coords, 11, 0.1)[0:1]), a[None])
    # margin 0.1 × span 5 = 0.5 at least, extended by whole nominal steps h = (span + 1)/10
    assert g.step == pytest.approx((0.6, 0.3))
    assert a[0] == pytest.approx(-1.6) and a[-1] == pytest.approx(4.6)
    assert b[0] == pytest.approx(-0.6) and b[-1] == pytest.approx(2.6)
    assert torch.all(a.diff() > 0) and torch.all(a.diff() <= 0.6 + 1e-12)
    assert torch.all(b.diff() > 0) and torch.all(b.diff() <= 0.3 + 1e-12)
    # each anchor's coordinates are exactly grid values
    for k in range(3):
        row, col = g.anchor_index[k].tolist()
        assert (a[col].item(), b[row].item()) == tuple(coords[k].double().tolist())
    with pytest.raises(ModescapeError, match="resolution"):
        geometry.plane_grid(coords, resolution=1)
    with pytest.raises(ModescapeError, match="margin"):
        geometry.plane_grid(coords, margin=float("nan"))


@pytest.mark.parametrize("resolution", [2, 5, 21, 40])
def test_incommensurate_anchors_are_nodes_at_any_resolution(resolution):
    # the case of issue 12: m0 at a = 14.26 fell between two cells of a 21-point grid
    coords = torch.tensor([[0.0, 0.0], [14.26, 0.0], [3.3, 12.1]], dtype=torch.float64)
    g = geometry.anchored_grid(coords, resolution, 0.2)
    assert resolution <= len(g.a_values) <= resolution + 4
    assert resolution <= len(g.b_values) <= resolution + 4
    rows, cols = g.anchor_index[:, 0], g.anchor_index[:, 1]
    assert torch.equal(g.a_values[cols], coords[:, 0]) and torch.equal(
        g.b_values[rows], coords[:, 1]
    )


def test_anchor_node_of_the_plane_holds_the_anchors_own_values():
    model = _model()
    x, y = torch.randn(50, 1, 40), torch.randint(0, 10, (50,))
    g = torch.Generator().manual_seed(5)
    o = torch.zeros_like(
        weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    )
    base = weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    t1 = base + 0.01 * torch.randn(base.shape, generator=g)
    t2 = base + 0.01 * torch.randn(base.shape, generator=g)
    res = landscape.evaluate_plane(model, o, t1, t2, x, y, resolution=7, verbose=False)
    assert res.loss.shape == (len(res.b_values), len(res.a_values))
    for k, w in enumerate((o, t1, t2)):
        node = tuple(res.anchor_index[k].tolist())
        loss, acc, _ = _direct(model, w, x, y)
        assert res.loss[node].item() == pytest.approx(loss, rel=1e-5)
        assert res.accuracy[node].item() == pytest.approx(acc, abs=1e-6)
    # agreement of θ1 with itself at its own node: exactly 1, and the map's maximum
    n1, n2 = tuple(res.anchor_index[1].tolist()), tuple(res.anchor_index[2].tolist())
    assert res.agreement["theta1"][n1].item() == 1.0 == res.agreement["theta1"].max().item()
    assert res.agreement["theta2"][n2].item() == 1.0
    assert res.settings["grid_shape"] == list(res.loss.shape)


def test_plane_values_at_anchors_equal_direct_evaluation():
    model = _model()
    x, y = torch.randn(60, 1, 40), torch.randint(0, 10, (60,))
    o, t1, t2 = _commensurate_anchors(model)
    res = landscape.evaluate_plane(
        model, o, t1, t2, x, y, resolution=13, margin=0.25, batch_size=25
    )
    assert res.bn_policy == "none"
    torch.testing.assert_close(
        res.anchor_coords, torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
    )
    assert res.loss.shape == res.accuracy.shape == (13, 13)
    preds = {}
    for k, (w, (ia, ib)) in enumerate(zip((o, t1, t2), [(2, 2), (10, 2), (6, 10)])):
        loss, acc, preds[k] = _direct(model, w, x, y)
        assert res.a_values[ia].item() == pytest.approx(res.anchor_coords[k, 0].item(), abs=1e-6)
        assert res.b_values[ib].item() == pytest.approx(res.anchor_coords[k, 1].item(), abs=1e-6)
        assert res.loss[ib, ia].item() == pytest.approx(loss, rel=1e-5)
        assert res.accuracy[ib, ia].item() == pytest.approx(acc, abs=1e-6)
        assert res.anchor_loss[k].item() == pytest.approx(loss, rel=1e-5)
        assert res.anchor_accuracy[k].item() == pytest.approx(acc, abs=1e-6)
    # Agreement with θ1's predictions: 1 at θ1, the direct disagreement fraction at θ2.
    assert res.agreement["theta1"][2, 10].item() == pytest.approx(1.0)
    agree_12 = (preds[1] == preds[2]).float().mean().item()
    assert res.agreement["theta1"][10, 6].item() == pytest.approx(agree_12, abs=1e-6)
    assert res.anchor_agreement["theta2"][1].item() == pytest.approx(agree_12, abs=1e-6)


def test_plane_resumes_from_done_rows():
    model = _model()
    x, y = torch.randn(30, 1, 40), torch.randint(0, 10, (30,))
    o, t1, t2 = _commensurate_anchors(model, seed=1)
    kw = dict(resolution=5, margin=0.25, verbose=False)  # nominal step 0.75: b rows -0.75..2.75
    seen = {}
    full = landscape.evaluate_plane(model, o, t1, t2, x, y, on_row=seen.__setitem__, **kw)
    assert sorted(seen) == list(range(len(full.b_values))) == list(range(6))
    done = {i: seen[i] for i in (0, 3)}
    redone = {}
    again = landscape.evaluate_plane(
        model, o, t1, t2, x, y, done_rows=done, on_row=redone.__setitem__, rows_per_block=2, **kw
    )
    assert sorted(redone) == [1, 2, 4, 5]
    torch.testing.assert_close(again.loss, full.loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(again.agreement["theta2"], full.agreement["theta2"])


def test_path_endpoints_and_barrier():
    model = _model((3, 8, 8), "smallcnn", "seed")
    x, y = torch.randn(40, 3, 8, 8), torch.randint(0, 10, (40,))
    _, t1, t2 = _commensurate_anchors(model, seed=2)
    path = landscape.interpolate_path(model, t1, t2, x, y, n_points=5)
    for idx, w in ((0, t1), (-1, t2)):
        loss, acc, _ = _direct(model, w, x, y)
        assert path.loss[idx].item() == pytest.approx(loss, rel=1e-5)
        assert path.error[idx].item() == pytest.approx(1 - acc, abs=1e-6)
    assert path.disagreement["theta1"][0] == 0 and path.disagreement["theta2"][-1] == 0
    expected = path.error.max().item() - (path.error[0] + path.error[-1]).item() / 2
    assert path.error_barrier == pytest.approx(expected)
    assert path.error_barrier >= 0 and path.loss_barrier >= 0
    same = landscape.interpolate_path(model, t1, t1.clone(), x, y, n_points=4)
    assert same.error_barrier == 0.0
    assert same.loss_barrier == pytest.approx(0.0, abs=1e-6)


def test_bn_policies_on_resnet():
    model = _model((3, 8, 8), "resnet20")
    x, y = torch.randn(12, 3, 8, 8), torch.randint(0, 10, (12,))
    train_x = torch.randn(32, 3, 8, 8)
    s1 = copy.deepcopy(model.state_dict())
    torch.manual_seed(5)
    s2 = build_model("resnet20", "paper", (3, 8, 8), 10).state_dict()
    for name in s2:  # distinct running stats, so interpolation is visible
        if name.endswith("running_var"):
            s2[name] = s2[name] * 2.0
    fallback = landscape.interpolate_path(model, s1, s2, x, y, n_points=3)  # no train_x
    assert fallback.bn_policy == "interpolate"
    with pytest.raises(ModescapeError, match="allowed: recompute, interpolate, keep"):
        landscape.interpolate_path(model, s1, s2, x, y, bn_policy="reset")
    # "interpolate": the endpoints are the endpoint models with their own buffers.
    path = landscape.interpolate_path(model, s1, s2, x, y, n_points=3, bn_policy="interpolate")
    assert path.bn_policy == "interpolate"
    net = copy.deepcopy(model)
    net.load_state_dict(s2)
    with torch.no_grad():
        loss2 = F.cross_entropy(net.eval()(x), y).item()
    assert path.loss[-1].item() == pytest.approx(loss2, rel=1e-5)
    # "recompute": every point's stats come from train_x (here checked at θ2).
    path = landscape.interpolate_path(
        model, s1, s2, x, y, n_points=3, train_x=train_x, bn_batches=2, bn_batch_size=16
    )
    assert path.bn_policy == "recompute" and path.settings["bn_batches"] == 2
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net.train()(train_x[:16])
        net(train_x[16:])
        loss2 = F.cross_entropy(net.eval()(x), y).item()
    assert path.loss[-1].item() == pytest.approx(loss2, rel=1e-5)


def test_plane_options_and_keyword_settings_are_one_thing():
    model = _model()
    x, y = torch.randn(30, 1, 40), torch.randint(0, 10, (30,))
    base = weightspace.flatten_params(model.state_dict(), weightspace.param_names(model))
    g = torch.Generator().manual_seed(1)
    t1, t2 = (base + 0.01 * torch.randn(base.shape, generator=g) for _ in range(2))
    opts = landscape.PlaneOptions(resolution=5, margin=0.3, verbose=False)
    a = landscape.evaluate_plane(model, torch.zeros_like(base), t1, t2, x, y, options=opts)
    b = landscape.evaluate_plane(
        model, torch.zeros_like(base), t1, t2, x, y, resolution=5, margin=0.3, verbose=False
    )
    assert torch.equal(a.loss, b.loss) and a.settings == b.settings
    # a keyword overrides the options' field; an engine setting is recorded as such
    c = landscape.evaluate_plane(
        model, torch.zeros_like(base), t1, t2, x, y, options=opts, margin=0.5, batch_size=7
    )
    assert c.settings["margin"] == 0.5 and c.settings["batch_size"] == 7
    assert c.a_values.min() < a.a_values.min()


def test_plane_in_one_call_equals_rows_in_blocks_and_anchor_values_are_their_nodes():
    model = _model()
    x, y = torch.randn(40, 1, 40), torch.randint(0, 10, (40,))
    o, t1, t2 = _commensurate_anchors(model, seed=2)
    kw = dict(resolution=7, margin=0.25, verbose=False)
    one = landscape.evaluate_plane(model, o, t1, t2, x, y, **kw)  # no on_row: one engine call
    blocks = landscape.evaluate_plane(model, o, t1, t2, x, y, rows_per_block=2, **kw)
    torch.testing.assert_close(one.loss, blocks.loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(one.accuracy, blocks.accuracy)
    nodes = tuple(one.anchor_index.t())
    assert torch.equal(one.anchor_loss, one.loss[nodes])
    assert torch.equal(one.anchor_agreement["theta1"], one.agreement["theta1"][nodes])
    for k, w in enumerate((o, t1, t2)):
        loss, acc, _ = _direct(model, w, x, y)
        assert one.anchor_loss[k].item() == pytest.approx(loss, rel=1e-5)
        assert one.anchor_accuracy[k].item() == pytest.approx(acc, abs=1e-6)
