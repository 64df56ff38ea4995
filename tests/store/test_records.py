"""The run's own records (member.json, the manifest's data record, metrics.jsonl) as types:
what the writer wrote comes back byte for byte."""

from __future__ import annotations

import json

import pytest

from modescape.store.files import json_bytes
from modescape.store.records import (
    DataSummary,
    EpochMetrics,
    Manifest,
    MemberInfo,
    MemberStatus,
)
from modescape.store.run import load_run


def test_manifest_reads_back_to_the_same_bytes(tiny_run):
    run = load_run(tiny_run)
    raw = (tiny_run / "manifest.json").read_bytes()
    manifest = run.manifest
    assert isinstance(manifest, Manifest) and manifest.sha256 == json.loads(raw)["sha256"]
    assert json_bytes(manifest.to_dict()) == raw  # every key the writer wrote, typed
    assert json_bytes(manifest.config) == json_bytes(run.config.to_dict())
    assert manifest.data == run.data_summary
    assert manifest.machine is not None and manifest.machine.cpu_count
    assert manifest.arch is not None and manifest.arch.source == "builtin"
    assert set(manifest.seeds) == {"base"} | {f"member_{m}" for m in run.members}
    assert manifest.imported is None and manifest.spawn is None


def test_member_json_reads_back_to_the_same_bytes(tiny_run):
    run = load_run(tiny_run)
    for m in run.members:
        f = tiny_run / "members" / f"m{m:03d}" / "member.json"
        info = run.member_info(m)
        assert isinstance(info, MemberInfo) and info.state == "finished" and info.member == m
        assert json_bytes(info.to_dict()) == f.read_bytes()
        assert run.member_status(m) == MemberStatus(
            "finished", info.epoch, None, info.pid, info.host
        )


def test_data_summary_and_metrics_read_back_to_what_was_written(tiny_run):
    run = load_run(tiny_run)
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert isinstance(run.data_summary, DataSummary)
    assert run.data_summary.to_dict() == manifest["data"]
    assert run.data_summary.size("test") == manifest["data"]["n_test"]
    lines = (tiny_run / "members/m000/metrics.jsonl").read_text().splitlines()
    records = run.metrics(0)
    assert all(isinstance(r, EpochMetrics) for r in records)
    assert [json.dumps(r.to_dict(), sort_keys=True) for r in records] == lines
    assert records[-1].value("test_acc") == records[-1].test_acc
    with pytest.raises(KeyError):
        records[-1].value("bogus")


def test_an_imported_style_member_keeps_its_keys():
    info = MemberInfo(3, "finished", epoch=2, snapshots=[1, 2], imported=True)
    data = info.to_dict()
    assert "host" not in data and "spawn" not in data and data["seed"] is None
    assert MemberInfo.from_dict(data) == info
