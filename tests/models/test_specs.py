"""The spec file: the automatic spec written as JSON and read back is the same spec (heads'
views and concatenations included), aligns as the original does, and every kind of mistake is
one ModescapeError naming the problem and what is allowed."""

from __future__ import annotations

import json

import pytest
import torch

from modescape.errors import ModescapeError
from modescape.models import specs
from modescape.models.alignment import align_verified
from modescape.models.architectures import build_model
from modescape.models.autospec import auto_spec
from tests.models import test_autospec_blocks as blocks


@pytest.mark.parametrize("make", [blocks.DenseNetish, blocks.TimmViTish, blocks.ConvNeXtish])
def test_spec_file_round_trip_aligns_like_the_automatic_spec(make):
    _, a, b = blocks._pair(make)
    model = make()
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    auto = auto_spec(model, probe)
    doc = json.loads(json.dumps(specs.spec_to_json(auto)))
    assert doc["format"] == specs.SPEC_FORMAT and doc["version"] == 1
    read = specs.spec_from_json(doc, a)
    assert read == auto
    from_file = align_verified(a, b, model=model, probe=probe, spec=doc)  # the JSON document
    direct = align_verified(a, b, model=model, probe=probe, spec=auto)
    assert from_file.max_abs_prob_diff <= 1e-4
    for key in a:
        assert torch.equal(from_file.state_dict[key], direct.state_dict[key])


def test_builtin_spec_round_trip():
    state = build_model("resnet20", "paper", (3, 8, 8), 10).state_dict()
    spec = specs.permutation_spec(state, "resnet20")
    assert specs.spec_from_json(json.loads(json.dumps(specs.spec_to_json(spec))), state) == spec


def _edit(doc, path, value):
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("version",), 7, r"unsupported version 7 \(allowed: 1\)"),
        (("format",), "git-re-basin", r"'format' must be 'modescape.permutation-spec'"),
        (("extra",), 1, r"unknown key 'extra' \(allowed: format, version, permutations"),
        (("parameters", "dense.0.conv9.weight"), ["P0"], r"'dense.0.conv9.weight' is not in the "
         r"checkpoint \(did you mean .*dense.0.conv1.weight"),
        (("parameters", "stem.weight"), ["P0", None], r"one permutation or null for each of its "
         r"4 axes \(shape \[8, 3, 3, 3\]\)"),
        (("parameters", "stem.bias"), ["Q9"], r"unknown permutation 'Q9' \(allowed: P0, "),
        (("permutations", "P1"), 9, r"'dense.0.conv1.weight'\] axis 0 has 16 units in the "
         r"checkpoint, but 'P1' has 9"),
        (("permutations", "P0"), 9, r"concatenations\['C0'\]: 'P0' has 9 units, not 8"),
        (("permutations", "P0"), -1, r"integers > 0"),
        (("concatenations", "C0", 0, 1), 5, r"'P0' has 8 units, not 5"),
        (("views",), {"stem.weight": [8, 3, 3]}, r"\[8, 3, 3\] holds 72 values; 'stem.weight' "
         r"has shape \[8, 3, 3, 3\] \(216 values\)"),
        (("parameters",), KeyError, r"'parameters' must map state-dict entries"),
    ],
)  # fmt: skip
def test_spec_file_mistakes_are_one_line_naming_what_is_allowed(path, value, message):
    _, a, _ = blocks._pair(blocks.DenseNetish)
    spec = auto_spec(blocks.DenseNetish(), torch.randn(2, 3, 8, 8))
    doc = _edit(specs.spec_to_json(spec), path, value)
    with pytest.raises(ModescapeError, match=message) as err:
        specs.spec_from_json(doc, a, source="--align-spec my.json")
    assert str(err.value).startswith("--align-spec my.json: ") and "\n" not in str(err.value)
