import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import cli, tiny_config

from modescape.errors import ModescapeError
from modescape.store.files import save_npy, write_json
from modescape.store.manifest import FORMAT, seal
from modescape.store.run import init_run, load_run
from modescape.store.summary import verify_run
from modescape.training.launch import run_status
from modescape.training.prepare import prepare_run
from modescape.training.trainer import train, train_member


def flip(path, offset=-20):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_snapshot_byte_is_refused_unless_trusted(tiny_run_copy):
    snap = tiny_run_copy / "members/m001/snapshots/e0004.safetensors"
    flip(snap)
    with pytest.raises(ModescapeError, match=r"checksum mismatch: .*m001/snapshots/e0004"):
        load_run(tiny_run_copy).state_dict(1)
    load_run(tiny_run_copy, trust=True).state_dict(1)  # reads the changed bytes
    assert verify_run(tiny_run_copy) == [
        "checksum mismatch members/m001/snapshots/e0004.safetensors"
    ]


def test_verify_and_info_exit_nonzero_on_problems(tiny_run_copy):
    assert cli("verify", str(tiny_run_copy))[0] == 0
    assert cli("info", str(tiny_run_copy))[0] == 0
    flip(tiny_run_copy / "members/m000/resume.safetensors")
    code, out, _ = cli("verify", str(tiny_run_copy))
    assert code == 1 and "m000/resume.safetensors" in out
    code, out, _ = cli("info", str(tiny_run_copy))
    assert code == 1 and "integrity problems" in out


@pytest.mark.parametrize(
    "rel, reader",
    [
        ("labels/test.npy", lambda r: r.labels("test")),
        ("members/m002/preds/test/e0002.npy", lambda r: r.predictions("test", 2, 2)),
        ("members/m002/metrics.jsonl", lambda r: r.metrics(2)),
        ("members/m002/member.json", lambda r: r.member_info(2)),
    ],
)
def test_every_file_a_run_reads_is_verified(tiny_run_copy, rel, reader):
    flip(tiny_run_copy / rel, offset=-3)
    with pytest.raises(ModescapeError, match=f"checksum mismatch: .*{rel}"):
        reader(load_run(tiny_run_copy))


@pytest.mark.parametrize("fmt, word", [("modescape-run/2", "newer"), ("modescape-run/0", "older")])
def test_another_format_is_refused_naming_both(tiny_run_copy, fmt, word):
    f = tiny_run_copy / "manifest.json"
    manifest = json.loads(f.read_text())
    manifest["format"] = fmt
    f.write_text(json.dumps(seal(manifest)))
    with pytest.raises(ModescapeError, match=f"{fmt}, {word} than {FORMAT}"):
        load_run(tiny_run_copy)


@pytest.mark.parametrize(
    "rel, content, message",
    [
        ("manifest.json", "[]", "expected a JSON object"),
        ("members/m000/member.json", '{"files": {}}', 'no valid "state"'),
        ("members/m000/metrics.jsonl", '{"epoch": 0}\n{"epo', "corrupt line 2 of"),
    ],
)
def test_bad_files_are_one_clear_error(tiny_run_copy, rel, content, message):
    (tiny_run_copy / rel).write_text(content)
    code, _, err = cli("-q", "analyze", str(tiny_run_copy))  # -q: no progress lines on stderr
    # Verified reads name the changed file; trusted reads say what is wrong with it.
    assert code == 2 and rel in err and err.count("\n") == 1
    if rel == "manifest.json":
        assert message in err
        return
    run = load_run(tiny_run_copy, trust=True)
    with pytest.raises(ModescapeError, match=message):
        run.metrics(0) if "metrics" in rel else run.member_info(0)


def test_wrong_shape_predictions_and_labels_name_the_file(tiny_run_copy):
    run = load_run(tiny_run_copy, trust=True)
    save_npy(run.prediction_path("test", 0, 1), np.zeros((7, 10), np.float32))
    with pytest.raises(ModescapeError, match=r"e0001\.npy must hold float32\[200, 10\].*\[7, 10\]"):
        run.predictions("test", 0, 1)
    save_npy(tiny_run_copy / "labels/test.npy", np.zeros(7, np.int64))
    with pytest.raises(ModescapeError, match=r"labels file .*test\.npy must hold int64\[200\]"):
        run.labels("test")


def test_wrong_shape_snapshot_names_the_file(tiny_run_copy):
    from modescape.store.files import save_safetensors

    run = load_run(tiny_run_copy, trust=True)
    sd = run.state_dict(0, 1)
    sd["head.weight"] = torch.zeros(3, 3)
    save_safetensors(run.snapshot_path(0, 1), sd)
    with pytest.raises(ModescapeError, match=r"e0001\.safetensors: head\.weight has shape"):
        run.state_dict(0, 1)


def test_lost_member_json_is_rebuilt_then_restored(tiny_run_copy):
    (tiny_run_copy / "members/m001/member.json").unlink()
    info = load_run(tiny_run_copy).member_info(1)
    assert info.state == "interrupted" and info.snapshots == [0, 1, 2, 3, 4]
    assert "member.json was lost" in info.reason
    before = (tiny_run_copy / "members/m001/snapshots/e0004.safetensors").stat().st_mtime_ns
    train_member(tiny_run_copy, 1)
    run = load_run(tiny_run_copy)
    assert run.member_info(1).state == "finished" and verify_run(tiny_run_copy) == []
    assert run.snapshot_path(1, 4).stat().st_mtime_ns == before  # nothing retrained


def test_finish_interrupted_before_the_manifest_is_completed(tiny_run_copy):
    f = tiny_run_copy / "manifest.json"
    manifest = json.loads(f.read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "/m002/" not in k}
    f.write_text(json.dumps(seal(manifest)))
    assert any("m002/member.json: finished but not recorded" in p for p in verify_run(f.parent))
    train(tiny_config(), tiny_run_copy)
    assert verify_run(tiny_run_copy) == []
    assert "members/m002/snapshots/e0004.safetensors" in load_run(tiny_run_copy).manifest.files


def test_changed_dataset_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    prepare_run(out, tiny_config(members=2, epochs=1))
    other = tiny_config(members=2, epochs=1, **{"data.mnist1d_samples": 900})
    data = load_run(out).dataset()
    object.__setattr__(data, "source", data.source | {"generator_args": {"num_samples": 900}})
    with pytest.raises(ModescapeError, match=r"dataset changed since run .* source_sha256"):
        train_member(out, 0, dataset=data)
    assert not (out / "members/m000/member.json").exists()
    del other


def test_legacy_interrupted_creation_is_cleared(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    write_json(out / "manifest.json", {"format": FORMAT, "files": {}})  # killed before config.json
    prepare_run(out, tiny_config(members=1, epochs=1))
    assert verify_run(out) == [] and (out / "labels/test.npy").exists()


def test_legacy_run_without_labels_is_repaired(tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(members=1, epochs=1)
    init_run(out, cfg)  # no labels, as if killed after config.json
    data = load_run(out).dataset()
    prepare_run(out, cfg, data)
    assert "labels/test.npy" in load_run(out).manifest.files


def test_a_stale_creation_folder_of_a_dead_process_is_removed(tmp_path):
    stale = tmp_path / ".run.creating-999999999"
    stale.mkdir()
    prepare_run(tmp_path / "run", tiny_config(members=1, epochs=1))
    assert not stale.exists()


def test_status_shows_a_dead_running_process_as_interrupted(tiny_run_copy):
    f = tiny_run_copy / "members/m000/member.json"
    info = json.loads(f.read_text())
    info.update(state="running", pid=999999999)
    write_json(f, info)
    shutil.copy(f, f.with_suffix(".bak"))
    rows = run_status(tiny_run_copy)
    assert rows[0]["state"] == "interrupted" and "999999999" in rows[0]["reason"]
    info.update(pid=os.getpid())
    write_json(f, info)
    assert run_status(tiny_run_copy)[0]["state"] == "running"


def test_a_changed_byte_in_the_manifest_itself_is_found(tiny_run_copy):
    f = tiny_run_copy / "manifest.json"
    f.write_text(f.read_text().replace('"created": "2', '"created": "3', 1))
    with pytest.raises(ModescapeError, match=r"checksum mismatch: .*manifest\.json"):
        load_run(tiny_run_copy)
    assert load_run(tiny_run_copy, trust=True).manifest.created.startswith("3")
    assert "manifest.json" in verify_run(tiny_run_copy)[0]


def test_default_trust_is_process_wide_and_off(tiny_run_copy):
    from modescape.store.run import set_default_trust

    flip(tiny_run_copy / "labels/test.npy", offset=-1)
    with pytest.raises(ModescapeError, match="checksum mismatch"):
        load_run(tiny_run_copy).labels()
    set_default_trust(True)
    try:
        assert load_run(tiny_run_copy).labels().shape == (200,)
        assert not load_run(tiny_run_copy, trust=False).trust
    finally:
        set_default_trust(False)
