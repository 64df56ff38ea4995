"""Published values to read a run against: Fort, Hu & Lakshminarayanan (2019), "Deep Ensembles: A
Loss Landscape Perspective" (arXiv 1912.02757), and the seed TF/Keras notebooks that explore it.

Every value is a typed `Reference` with its source. All are CIFAR-10 results; a value measured
on one architecture (`arch`) is shown only for runs of that architecture, so a row never puts a
SmallCNN number next to a MediumCNN run. Where the paper states a finding without a number, the
value is the finding in words. On any other dataset the comparison is qualitative, and the
table's caption says so (`comparison_note`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modescape.report.base import ReportContext, Table

PAPER = "Fort et al. (2019)"
SEED = "seed notebooks"
# mode connectivity (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast Ensembling")
GARIPOV = "Garipov et al. (2018)"


@dataclass(frozen=True)
class Reference:
    key: str  # the quantity's id, shared by every reference value of that quantity
    quantity: str  # in words, as the table shows it
    value: str  # the published value or finding, as text
    source: str  # where it is published: paper figure or seed notebook (and architecture)
    arch: str | None = None  # the architecture it was measured on; None: any (a finding)
    number: float | None = None  # the value as a number, where there is one


REFERENCES: tuple[Reference, ...] = (
    # single members and ensembles (seed notebooks: 40 epochs, Adam, step schedule)
    Reference("single_accuracy", "single-member test accuracy", "64.36%",
              f"{SEED}, SmallCNN", "smallcnn", 0.6436),
    Reference("single_accuracy", "single-member test accuracy", "77.4%",
              f"{SEED}, MediumCNN", "mediumcnn", 0.774),
    Reference("deep_10_accuracy", "deep ensemble of 10 members, test accuracy", "≈68.5%",
              f"{SEED}, SmallCNN", "smallcnn", 0.685),
    Reference("deep_10_accuracy", "deep ensemble of 10 members, test accuracy", "≈83.2%",
              f"{SEED}, MediumCNN", "mediumcnn", 0.832),
    Reference("deep_beats_snapshot", "deep ensemble vs ensembles from one trajectory",
              "independent members ahead", f"{PAPER}, ensembles vs subspace methods"),
    # weight space
    Reference("cosine_members", "cosine of final weights of two members", "≈0 (orthogonal)",
              f"{PAPER}, Figure 3"),
    Reference("cosine_members", "cosine of final weights of two members", "≈0.01",
              f"{SEED}, SmallCNN", "smallcnn", 0.01),
    Reference("cosine_members", "cosine of final weights of two members", "≈0.02",
              f"{SEED}, MediumCNN", "mediumcnn", 0.02),
    Reference("cosine_late", "cosine of epoch 20 and epoch 40 weights, one trajectory", "≈0.98",
              f"{SEED}, SmallCNN", "smallcnn", 0.98),
    # function space
    Reference("disagreement_members", "disagreement between two members' test predictions",
              "≈0.27", f"{SEED}, SmallCNN", "smallcnn", 0.27),
    Reference("disagreement_members", "disagreement between two members' test predictions",
              "≈0.22", f"{SEED}, MediumCNN", "mediumcnn", 0.22),
    Reference("disagreement_late", "disagreement within the last 10 snapshots (mean pairwise)",
              "≈0.06", f"{SEED}, SmallCNN", "smallcnn", 0.06),
    Reference("trajectories_modes", "trajectories from independent initialisations",
              "end in different modes", f"{PAPER}, Figures 2 and 4"),
    # subspace sampling
    Reference("norm_diversity_members", "normalised diversity of independent members",
              "≈0.85-1.0", f"{PAPER}, diversity-accuracy plane"),
    Reference("subspace_band", "subspace samples in the diversity-accuracy plane",
              "a band from the reference that never reaches the members",
              f"{PAPER}, diversity-accuracy plane"),
    Reference("subspace_tsne", "subspace samples in function space (t-SNE)",
              "stay near their own trajectory",
              f"{PAPER}, t-SNE with subspace samples"),
    Reference("deep_beats_subspace", "deep ensemble vs samples around one trajectory",
              "independent members ahead", f"{PAPER}, ensembles vs subspace methods"),
    # loss landscape
    Reference("landscape_valleys", "independent optima on a plane through the origin",
              "separate low-loss valleys; agreement with each is high only in its own",
              f"{PAPER}, loss-landscape plane"),
    # connectors between modes (Garipov et al. 2018, Table 1, CIFAR-10; paper v1)
    Reference("connect_vgg16", "test error along a Bézier curve between two optima (VGG16)",
              "ends 6.79-6.94%, curve 6.79-7.75% (polychain 6.79-8.08%)",
              f"{GARIPOV}, Table 1"),
    Reference("connect_preresnet",
              "test error along a Bézier curve between two optima (PreResNet164)",
              "ends 4.75-4.76%, curve 4.45-4.97%", f"{GARIPOV}, Table 1"),
    Reference("connect_functions", "predictions along a low-loss connector",
              "connectors exist, but the modes are not connected in the space of predictions",
              f"{PAPER}, v1 abstract"),
    # dataset shift
    Reference("shift_ensemble", "deep ensemble vs single member and subspace models under shift",
              "ensemble best at every severity",
              f"{PAPER}, CIFAR-10-C"),
)  # fmt: skip


def lookup(key: str, arch: str) -> list[Reference]:
    """The references of quantity `key` that apply to a run of `arch` (findings apply to all)."""
    return [r for r in REFERENCES if r.key == key and r.arch in (None, arch)]


def is_cifar10(dataset: str) -> bool:
    return dataset.lower().replace("-", "") == "cifar10"


DATASET_NAMES = {"mnist1d": "MNIST-1D", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def dataset_label(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def comparison_note(dataset: str) -> str:
    """The sentence that says how to read the published values against this run."""
    if is_cifar10(dataset):
        return (
            "Published values are for CIFAR-10, like this run; they match only for the same "
            "architecture, recipe and number of epochs."
        )
    name = dataset_label(dataset)
    proxy = ", a small 1-D proxy for it" if dataset == "mnist1d" else ""
    return (
        f"Published values are for CIFAR-10; this run uses {name}{proxy}, so the comparison "
        "is qualitative: read the direction and the ordering of the numbers, not their size."
    )


def comparison_table(
    name: str, dataset: str, arch: str, rows: Sequence[tuple[str, str]], caption: str = ""
) -> Table:
    """quantity | this run | paper/seed (CIFAR-10) | source, one row per reference value that
    applies to `arch`. rows: (reference key, this run's value as text) in display order. A
    quantity with values only for other architectures gets one row saying there is none."""
    out = []
    for key, this_run in rows:
        refs = lookup(key, arch)
        if refs:
            out += [[r.quantity, this_run, r.value, r.source] for r in refs]
            continue
        other = [r for r in REFERENCES if r.key == key]
        if not other:
            raise KeyError(f"no reference value named {key!r}")
        archs = sorted({r.arch for r in other if r.arch})
        out.append(
            [other[0].quantity, this_run, f"no published value for {arch}",
             f"{SEED} report {', '.join(archs)} only"]
        )  # fmt: skip
    note = comparison_note(dataset)
    return Table(
        name,
        ["quantity", "this_run", "paper_or_seed_cifar10", "source"],
        out,
        f"{caption} {note}".strip(),
        align_numbers=False,
    )


def run_dataset(ctx: ReportContext) -> str:
    return str(ctx.run.data_summary.name or ctx.run.config.data.name)


def section_table(
    ctx: ReportContext, section: str, rows: Sequence[tuple[str, str]], caption: str = ""
) -> Table:
    """The `<section>_vs_published` table of a section of this run (`comparison_table`)."""
    return comparison_table(
        f"{section}_vs_published",
        run_dataset(ctx),
        str(ctx.run.config.model.arch),
        rows,
        caption,
    )


__all__ = [
    "REFERENCES",
    "Reference",
    "comparison_note",
    "comparison_table",
    "dataset_label",
    "lookup",
    "run_dataset",
    "section_table",
]
