"""Published values beside a run: architecture-specific values only for that architecture, and
the comparison said to be qualitative off CIFAR-10; the provenance table's flattening."""

from __future__ import annotations

import pytest

from modescape.report import references
from modescape.report.provenance import flatten


def test_seed_values_are_shown_only_for_their_architecture():
    rows = [("disagreement_members", "0.250"), ("cosine_members", "0.010")]
    small = references.comparison_table("x", "cifar10", "smallcnn", rows)
    assert [r[2] for r in small.rows] == ["≈0.27", "≈0 (orthogonal)", "≈0.01"]
    medium = references.comparison_table("x", "cifar10", "mediumcnn", rows)
    assert [r[2] for r in medium.rows] == ["≈0.22", "≈0 (orthogonal)", "≈0.02"]
    # ResNet20: no seed value; the paper's finding (any architecture) still applies
    resnet = references.comparison_table("x", "cifar10", "resnet20", rows)
    assert resnet.rows[0][2] == "no published value for resnet20"
    assert [r[2] for r in resnet.rows[1:]] == ["≈0 (orthogonal)"]
    assert all(r[1] in ("0.250", "0.010") for r in resnet.rows)


def test_the_comparison_is_qualitative_off_cifar10():
    rows = [("norm_diversity_members", "0.9")]
    cifar = references.comparison_table("x", "cifar10", "smallcnn", rows)
    assert "qualitative" not in cifar.caption
    proxy = references.comparison_table("x", "mnist1d", "smallcnn", rows)
    assert "MNIST-1D" in proxy.caption and "proxy" in proxy.caption
    assert "qualitative" in proxy.caption
    assert "qualitative" in references.comparison_note("cifar100")
    with pytest.raises(KeyError):
        references.comparison_table("x", "cifar10", "smallcnn", [("no_such_quantity", "1")])


def test_every_reference_names_its_source():
    for r in references.REFERENCES:
        assert r.source.startswith((references.PAPER, references.SEED, references.GARIPOV)), r
        # only the seed's values are per architecture; published findings hold for any
        assert (r.arch is None) == (not r.source.startswith(references.SEED)), r
        assert r.number is None or r.arch is not None  # numbers are the seed's, per arch


def test_flatten_writes_every_field_as_a_dotted_key():
    cfg = {"train": {"lr": 1e-3, "augment": {"flip": False}, "milestones": [10, 20]}, "seed": 0}
    assert flatten(cfg) == [
        ("seed", 0),
        ("train.augment.flip", "false"),
        ("train.lr", 0.001),
        ("train.milestones", "[10, 20]"),
    ]
