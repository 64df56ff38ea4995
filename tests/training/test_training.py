import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli, snapshot_bytes, tiny_config

from modescape.config import AugmentConfig
from modescape.store.files import sha256_file
from modescape.store.manifest import seal
from modescape.store.run import load_run
from modescape.training.loop import augment_batch, batch_order
from modescape.training.trainer import train, train_member


def test_run_layout_snapshots_and_checksums(tiny_run):
    run = load_run(tiny_run)
    assert run.finished_members() == [0, 1, 2]
    for m in run.members:
        assert run.snapshot_epochs(m) == [0, 1, 2, 3, 4]
        traj = run.trajectory("test", m)
        assert traj.shape == (5, 200, 10) and traj.dtype == np.float32
        np.testing.assert_allclose(traj.sum(-1), 1.0, atol=1e-5)
        assert len(run.metrics(m)) == 5
    files = run.manifest.files
    assert len([f for f in files if "/snapshots/" in f]) == 3 * 5
    assert all(f"members/m{m:03d}/resume.safetensors" in files for m in run.members)
    assert "labels/test.npy" in files and "members/m000/member.json" in files
    assert all(sha256_file(tiny_run / rel) == digest for rel, digest in files.items())
    assert run.verify() == []


def test_cached_predictions_match_the_stored_weights(tiny_run):
    run = load_run(tiny_run)
    x = run.dataset().x_test
    with torch.no_grad():
        probs = torch.softmax(run.model(1, epoch=2)(x), dim=1).numpy()
    np.testing.assert_allclose(run.predictions("test", 1, epoch=2), probs, atol=1e-6)


def test_members_differ_and_training_learns(tiny_run):
    run = load_run(tiny_run)
    w0, w1 = run.state_dict(0, 0), run.state_dict(1, 0)
    assert not torch.equal(w0["head.weight"], w1["head.weight"])
    m = run.metrics(0)
    assert m[-1].test_acc > m[0].test_acc + 0.15  # well above chance after 4 epochs
    assert m[-1].train_loss < m[1].train_loss


def test_same_command_same_bytes(tmp_path, tiny_run):
    out = tmp_path / "again"
    train(tiny_config(), out, members=[1])
    a, b = snapshot_bytes(tiny_run), snapshot_bytes(out)
    assert {k: v for k, v in a.items() if "/m001/" in k} == b


def test_rerun_skips_finished_members(tiny_run_copy):
    before = {p: p.stat().st_mtime_ns for p in tiny_run_copy.rglob("*.safetensors")}
    train(tiny_config(), tiny_run_copy)
    after = {p: p.stat().st_mtime_ns for p in tiny_run_copy.rglob("*.safetensors")}
    assert before == after


def test_resume_from_interrupted_epoch_is_byte_identical(tiny_run, tmp_path):
    """Simulate a crash after epoch 2: roll the member back and let it finish."""
    out = tmp_path / "run"
    cfg = tiny_config()
    train(cfg, out, members=[0])
    # Rewind member 0 to the state of a process killed during epoch 3.
    run = load_run(out)
    mdir = run.member_dir(0)
    for e in (3, 4):
        (mdir / "snapshots" / f"e{e:04d}.safetensors").write_bytes(b"half-written garbage")
    # ...and its commit point (resume file) still says epoch 2.
    train(tiny_config(epochs=2), tmp_path / "two", members=[0])
    (mdir / "resume.safetensors").write_bytes(
        (tmp_path / "two" / "members/m000/resume.safetensors").read_bytes()
    )
    info = json.loads((mdir / "member.json").read_text())
    info.update(state="running", epoch=2)
    rel = "members/m000/resume.safetensors"
    info["files"][rel] = sha256_file(out / rel)  # what the commit of epoch 2 recorded
    (mdir / "member.json").write_text(json.dumps(info))
    # A member that never finished has nothing in the manifest yet.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "/m000/" not in k}
    (out / "manifest.json").write_text(json.dumps(seal(manifest)))
    train_member(out, 0)
    ref = {k: v for k, v in snapshot_bytes(tiny_run).items() if "/m000/" in k}
    assert snapshot_bytes(out) == ref


def _spawn_train(out: Path) -> subprocess.Popen:
    code = (
        "import sys, torch; sys.path.insert(0, 'tests'); torch.set_num_threads(1);"
        "from conftest import tiny_config; from modescape.training.trainer import train;"
        f"train(tiny_config(members=2, epochs=4), {str(out)!r})"
    )
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen([sys.executable, "-c", code], cwd=root, env=os.environ.copy())


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_snapshots(tiny_run, tmp_path):
    out = tmp_path / "killed"
    proc = _spawn_train(out)
    # Kill as soon as member 0 has written its second snapshot: mid-run, mid-member.
    deadline = time.time() + 120
    target = out / "members/m000/snapshots/e0002.safetensors"
    while not target.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the training process ended before it was killed"
    assert load_run(out).member_info(0).state == "running"
    train(tiny_config(members=2, epochs=4), out)
    ref = {k: v for k, v in snapshot_bytes(tiny_run).items() if "/m002/" not in k}
    assert snapshot_bytes(out) == ref
    assert load_run(out).verify() == []


def test_other_config_in_same_directory_is_refused(tiny_run_copy):
    before = (tiny_run_copy / "manifest.json").read_bytes()
    code, _, err = cli("train", "--members", "3", "--epochs", "5", "--out", str(tiny_run_copy))
    assert code == 2 and "another config" in err and "train.epochs: 4 -> 5" in err
    assert (tiny_run_copy / "manifest.json").read_bytes() == before


def test_batch_order_is_seeded_permutation():
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = batch_order(10, 4, "permutation", g1)
    assert [len(b) for b in a] == [4, 4, 2]
    assert sorted(torch.cat(a).tolist()) == list(range(10))
    assert all(torch.equal(x, y) for x, y in zip(a, batch_order(10, 4, "permutation", g2)))
    r = batch_order(10, 4, "replacement", g1)
    assert [len(b) for b in r] == [4, 4, 4]


def test_pad_crop_is_a_shift_with_zero_fill():
    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = augment_batch(x, AugmentConfig(pad_crop=1), 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for img in out[:, 0]:
        # every output is the input shifted by (dy, dx) in {-1, 0, 1}^2, zeros shifted in
        found = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ref = torch.zeros(6, 6)
                ref[1:5, 1:5] = x[0, 0]
                if torch.equal(ref[1 + dy : 5 + dy, 1 + dx : 5 + dx], img):
                    found = True
        assert found
    shifts = {tuple(o.flatten().tolist()) for o in out[:, 0]}
    assert len(shifts) > 3  # several different shifts drawn


def test_flip_and_brightness():
    x = torch.rand(256, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, AugmentConfig(flip=True), 1.0, g)
    flipped = [bool(torch.equal(o, i.flip(-1))) for o, i in zip(out, x)]
    assert 0.3 < np.mean(flipped) < 0.7
    out = augment_batch(x, AugmentConfig(brightness=0.5), 255.0, g)
    delta = (out - x).flatten(1)
    assert torch.allclose(
        delta.min(1).values, delta.max(1).values, atol=1e-3
    )  # one shift per image
    assert delta.abs().max() <= 0.5 * 255 + 1e-3 and delta.abs().max() > 0.3 * 255


@pytest.mark.slow
def test_smallcnn_trains_on_the_real_cifar10_folder(tmp_path):
    from conftest import SHARED

    archive = SHARED / "datasets" / "cifar10-jpg.tar.gz"
    if not archive.exists():
        pytest.skip(f"{archive} not present")
    out = tmp_path / "cifar"
    code, _, err = cli(
        "train", "--data", "cifar10", "--root", str(archive), "--arch", "smallcnn",
        "--recipe", "paper", "--members", "1", "--epochs", "1",
        "--set", "data.val_size=500", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    run = load_run(out)
    assert run.data_summary.n_train == 49_500 and run.data_summary.n_val == 500
    assert run.data_summary.classes[0] == "airplane"
    assert run.splits == ("val", "test")
    assert sum(p.numel() for p in run.build_model().parameters()) == 19_466
    last = run.metrics(0)[-1]
    assert last.test_acc > 0.3  # one epoch from raw pixels: well above chance (0.1)
    assert run.predictions("val", 0).shape == (500, 10)


def test_pixel_unit_follows_the_data_scaling():
    from modescape.training.loop import pixel_unit

    assert pixel_unit({"scaling": "raw"}, (3, 32, 32)) == 255.0
    assert pixel_unit({"scaling": "unit"}, (3, 32, 32)) == 1.0
    unit = pixel_unit({"scaling": "standardize", "std": [2.0, 4.0, 8.0]}, (3, 32, 32))
    assert unit.shape == (1, 3, 1, 1) and unit.flatten().tolist() == [0.5, 0.25, 0.125]
    assert pixel_unit({"scaling": "none (MNIST-1D signals ...)"}, (1, 40)) == 1.0


def test_damaged_resume_state_is_refused(tiny_run_copy):
    from modescape.errors import ModescapeError
    from modescape.store.files import write_json
    from modescape.store.manifest import record_files

    mdir = tiny_run_copy / "members/m000"
    info = json.loads((mdir / "member.json").read_text())
    info.update(state="running", epoch=4)
    record_files(
        tiny_run_copy, {"members/m000/member.json": write_json(mdir / "member.json", info)}
    )
    data = bytearray((mdir / "resume.safetensors").read_bytes())
    data[-5] ^= 0x01  # one bit of the optimiser or RNG state
    (mdir / "resume.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModescapeError, match=r"resume\.safetensors is not the resume state"):
        train_member(tiny_run_copy, 0)


def test_optimizer_state_restored_in_the_parameters_memory_format():
    """Fused Adam walks moments as flat memory: after a save/load round trip through the resume
    format, a channels_last conv must continue exactly as without the round trip."""
    import copy

    from modescape.store.files import safetensors_bytes
    from modescape.training.loop import load_optimizer, optimizer_tensors

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(conv.parameters(), lr=1e-2, fused=True)
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)

    def step(model, optimizer):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()

    for _ in range(3):
        step(conv, opt)
    tensors, groups = optimizer_tensors(opt)
    from safetensors.torch import load

    restored = load(safetensors_bytes(tensors, {}))
    conv2 = copy.deepcopy(conv)
    opt2 = torch.optim.Adam(conv2.parameters(), lr=1e-2, fused=True)
    load_optimizer(opt2, restored, json.loads(json.dumps(groups)))
    assert opt2.state[conv2.weight]["exp_avg"].stride() == conv2.weight.stride()
    for _ in range(2):
        step(conv, opt)
        step(conv2, opt2)
    assert torch.equal(conv.weight, conv2.weight) and torch.equal(conv.bias, conv2.bias)
