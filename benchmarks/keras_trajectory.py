"""The seed notebooks' own stack (Keras) on the same CIFAR-10 as modescape: is a gap to the seed's
published figures the data and machine, or modescape?

Trains `--members` seed SmallCNNs (or MediumCNNs) in Keras with the seed recipe (Adam, batch 128,
40 epochs, the seed schedule, pixels / 255, shuffled every epoch) on the image folder modescape
reads, keeps the test-set predictions after every epoch, and prints the quantities of
`reproduce_seed.py` (accuracy, pairwise disagreement, late disagreement over the last 10
snapshots) next to those of a modescape run of the same experiment:

    pip install tensorflow-cpu   # benchmark-only
    python benchmarks/keras_trajectory.py --root ../shared/datasets/cifar10-jpg.tar.gz \\
        --members 2 --out runs/keras-c10 --compare runs/seed-c10

`--continue-from RUN` instead checks the update rule itself: from member 0's final weights *and*
Adam state, one more epoch at the last stage's learning rate in PyTorch and in Keras (weights,
moments and step count copied), printing the share of test labels each changes.

Predictions are saved per member (`<out>/k<i>/e<epoch>.npy`, argmax labels and probabilities);
a rerun skips the members already finished.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from keras_models import compile_seed, import_tensorflow, seed_lr, seed_model

LATE = 10  # the notebooks' "Train Trajectory" window: the last 10 snapshots


def train_member(tf, arch: str, data, seed: int, out: Path, epochs: int) -> None:
    if (out / f"e{epochs:04d}.npy").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(seed)
    model = compile_seed(tf, seed_model(tf, arch))
    x_train, y_train, x_test = data

    class KeepPredictions(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probs = self.model.predict(x_test, batch_size=1000, verbose=0)
            np.save(out / f"e{epoch + 1:04d}.npy", probs.astype(np.float32))
            print(f"  k{seed} epoch {epoch + 1}: train acc {logs['accuracy']:.4f}", flush=True)

    tick = time.perf_counter()
    model.fit(
        x_train, y_train, batch_size=128, epochs=epochs, shuffle=True, verbose=0,
        callbacks=[tf.keras.callbacks.LearningRateScheduler(seed_lr), KeepPredictions()],
    )  # fmt: skip
    print(f"  k{seed}: {time.perf_counter() - tick:.0f} s")


def trajectory_stats(labels: list[np.ndarray], y: np.ndarray) -> dict[str, float]:
    """labels[e] = argmax predictions after epoch e+1 of one member."""
    late = labels[-LATE:]
    pairs = list(itertools.combinations(range(len(late)), 2))
    return {
        "accuracy": float(np.mean(labels[-1] == y)),
        "late": float(np.mean([np.mean(late[i] != late[j]) for i, j in pairs])),
        "adjacent": float(np.mean([np.mean(a != b) for a, b in itertools.pairwise(late)])),
    }


def summarise(name: str, members: list[list[np.ndarray]], final_probs, y: np.ndarray) -> None:
    stats = [trajectory_stats(m, y) for m in members]
    finals = [m[-1] for m in members]
    across = [np.mean(a != b) for a, b in itertools.combinations(finals, 2)]
    ens = np.mean(final_probs, axis=0).argmax(-1)
    row = {k: np.mean([s[k] for s in stats]) for k in stats[0]}
    print(
        f"{name:<26} {len(members):>3} {row['accuracy']:>9.4f} {np.mean(ens == y):>9.4f} "
        f"{np.mean(across) if across else float('nan'):>9.4f} {row['late']:>9.4f} "
        f"{row['adjacent']:>9.4f}"
    )
    for i, s in enumerate(stats):
        print(f"  {name} #{i}: acc {s['accuracy']:.4f}, late {s['late']:.4f}")


def modescape_members(run: Path, epochs: int) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """The test predictions a modescape run kept, read as plain `.npy` (no pickle)."""
    labels, finals = [], []
    for member in sorted((run / "members").glob("m*")):
        files = [member / "preds" / "test" / f"e{e:04d}.npy" for e in range(1, epochs + 1)]
        if not all(f.exists() for f in files):
            continue
        probs = [np.load(f, allow_pickle=False) for f in files]
        labels.append([p.argmax(-1) for p in probs])
        finals.append(probs[-1])
    return labels, finals


def _to_keras_layout(v: np.ndarray) -> np.ndarray:
    """A PyTorch conv (O, I, H, W) or dense (out, in) tensor in Keras' layout."""
    return v.transpose(2, 3, 1, 0) if v.ndim == 4 else (v.T if v.ndim == 2 else v)


def continue_one_epoch(tf, run: Path, data, seeds: int = 2, lr: float = 2e-4) -> None:
    """One more epoch from member 0's final weights and Adam state, in both stacks."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    from modescape.models.architectures import build_model

    resume = load_file(run / "members" / "m000" / "resume.safetensors")
    weights = {k.removeprefix("model."): v for k, v in resume.items() if k.startswith("model.")}
    x_train, y_train, x_test = data

    def torch_model():
        model = build_model("smallcnn", "seed", (3, 32, 32), 10)
        model.load_state_dict(weights)
        return model

    @torch.inference_mode()
    def labels(model) -> np.ndarray:
        model.eval()
        xs = torch.from_numpy(x_test).permute(0, 3, 1, 2)
        chunks = [model(xs[i : i + 1000]).argmax(1) for i in range(0, len(xs), 1000)]
        return torch.cat(chunks).numpy()

    params = list(torch_model().parameters())
    adam = {i: {k: resume[f"opt.{i}.{k}"] for k in ("step", "exp_avg", "exp_avg_sq")}
            for i in range(len(params))}  # fmt: skip
    before = labels(torch_model())
    xt, yt = torch.from_numpy(x_train).permute(0, 3, 1, 2), torch.from_numpy(y_train)
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = torch_model().train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        opt.load_state_dict({
            "state": {i: {k: v.clone() for k, v in st.items()} for i, st in adam.items()},
            "param_groups": [{**opt.param_groups[0], "params": list(range(len(params)))}],
        })  # fmt: skip
        for idx in torch.randperm(len(xt)).split(128):
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        changed_torch = np.mean(labels(model) != before)

        tf.keras.utils.set_random_seed(seed)
        keras = seed_model(tf, "smallcnn")
        keras.set_weights([_to_keras_layout(w.detach().numpy()) for w in params])
        kopt = tf.keras.optimizers.Adam(lr)
        keras.compile(kopt, "sparse_categorical_crossentropy")
        kopt.build(keras.trainable_variables)
        for i in range(len(params)):
            kopt._momentums[i].assign(_to_keras_layout(adam[i]["exp_avg"].numpy()))
            kopt._velocities[i].assign(_to_keras_layout(adam[i]["exp_avg_sq"].numpy()))
        kopt.iterations.assign(int(adam[0]["step"]))
        same = np.mean(keras.predict(x_test, batch_size=1000, verbose=0).argmax(-1) == before)
        keras.fit(x_train, y_train, batch_size=128, epochs=1, shuffle=True, verbose=0)
        after = keras.predict(x_test, batch_size=1000, verbose=0).argmax(-1)
        print(
            f"data order {seed}: one more epoch at lr {lr:g} from member 0's final weights and "
            f"Adam state changes {changed_torch:.4f} of the test labels in PyTorch, "
            f"{np.mean(after != before):.4f} in Keras (Keras copy agreed on {same:.4f} before)"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="CIFAR-10 archive or image folder")
    p.add_argument("--arch", default="smallcnn", choices=["smallcnn", "mediumcnn"])
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/keras-c10")
    p.add_argument("--compare", help="a modescape run of the same experiment")
    p.add_argument("--continue-from", help="a modescape run: one more epoch in both stacks")
    args = p.parse_args()
    tf = import_tensorflow(args.threads)

    from modescape.data.datasets import load_dataset

    data = load_dataset("cifar10", args.root, scaling="unit")
    # NCHW float [0, 1] → NHWC, as the notebooks feed Keras.
    x_train = data.x_train.permute(0, 2, 3, 1).numpy()
    x_test = data.x_test.permute(0, 2, 3, 1).numpy()
    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    if args.continue_from:
        continue_one_epoch(tf, Path(args.continue_from), (x_train, y_train, x_test))
        return
    out = Path(args.out)
    for k in range(args.members):
        train_member(tf, args.arch, (x_train, y_train, x_test), k, out / f"k{k}", args.epochs)

    keras_labels, keras_finals = [], []
    for k in range(args.members):
        probs = [np.load(out / f"k{k}" / f"e{e:04d}.npy") for e in range(1, args.epochs + 1)]
        keras_labels.append([q.argmax(-1) for q in probs])
        keras_finals.append(probs[-1])
    print(f"\n{args.arch}, CIFAR-10 test set ({len(y_test):,} images), {args.epochs} epochs")
    print(
        f"{'stack':<26} {'M':>3} {'acc':>9} {'ens acc':>9} {'dis':>9} {'late dis':>9} "
        f"{'adjacent':>9}"
    )
    summarise("Keras (seed stack)", keras_labels, keras_finals, y_test)
    if args.compare:
        labels, finals = modescape_members(Path(args.compare), args.epochs)
        summarise("modescape", labels, finals, y_test)


if __name__ == "__main__":
    main()
