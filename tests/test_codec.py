"""The one JSON <-> dataclass codec: configs strictly, stored records leniently."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from modescape.codec import OMIT_NONE, decode, encode
from modescape.config import RunConfig
from modescape.errors import ModescapeError


@dataclass(frozen=True)
class Inner:
    n: int = 0
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)
    by_name: dict[str, Inner] = field(default_factory=dict)
    from_: str = field(default="", metadata={"key": "from"})
    maybe: int | None = field(default=None, metadata=OMIT_NONE)
    kept: int | None = None


def test_round_trip_restores_nested_records_tuples_and_reserved_keys():
    obj = Outer(Inner(1, ("a", "b")), [Inner(2)], {"x": Inner(3, ("c",))}, "m0", 4, None)
    data = encode(obj)
    assert data["from"] == "m0" and "from_" not in data
    assert decode(Outer, data) == obj
    assert isinstance(decode(Outer, data).inner.names, tuple)


def test_omit_none_fields_are_left_out_and_others_written_as_null():
    data = encode(Outer())
    assert "maybe" not in data and data["kept"] is None


def test_lenient_mode_ignores_unknown_keys_and_strict_mode_names_them():
    assert decode(Outer, {"newer": 1, "kept": 2}) == Outer(kept=2)
    with pytest.raises(ModescapeError, match=r"config key in inner.*'bogus'"):
        decode(Outer, {"inner": {"bogus": 1}}, strict=True)


def test_a_non_object_is_one_clear_error():
    with pytest.raises(ModescapeError, match="record 'inner' must be an object"):
        decode(Outer, {"inner": [1]})


def test_run_config_goes_through_the_codec():
    cfg = RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ModescapeError, match="config key in train"):
        RunConfig.from_dict({"train": {"epochs": 3, "epochz": 1}})
