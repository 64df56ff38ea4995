"""The run summary section: what was trained, how, with which code on which machine, how long
each stage took, and the published values of Fort et al. (2019) and the seed notebooks it can be
read against."""

from __future__ import annotations

from typing import Any

import numpy as np

from modescape.report import provenance, references
from modescape.report.base import ReportContext, Section, Table
from modescape.report.wording import count, frac, pct, sig, warned
from modescape.store import schema as S
from modescape.store.run import Run
from modescape.store.summary import describe_origin

dataset_name = references.run_dataset
compare = references.section_table


MEMBER_COLUMNS = ("member", "seed", "state", "epochs", "accuracy", "nll", "brier", "ece",
                  "min_consecutive_late_cosine", "time_s")  # fmt: skip


def run_section(ctx: ReportContext) -> Section:
    run, s, cfg = ctx.run, ctx.summary, ctx.run.config
    data = run.data_summary
    n_params = _parameter_count(run)
    accs = [r["accuracy"] for r in s.single_per_member]
    known = [t for info in ctx.member_infos if (t := info.time_s) is not None]
    M, E = len(ctx.members), ctx.epochs[-1]
    model = f"{cfg.model.arch} ({cfg.model.variant} variant, {n_params:,} parameters)"
    origin = describe_origin(run.manifest)
    imported = origin.startswith("imported")
    how = (
        f"whose snapshots (epochs {ctx.epochs[0]}–{E}) were {origin.replace('imported, ', '')}, "
        f"trained elsewhere with what modescape records as the {cfg.train.recipe} recipe"
        if imported
        else f"trained for {count(E, 'epoch')} with the {cfg.train.recipe} recipe"
    )
    reading = [
        f"{count(M, 'independent member')}, each a {model}, {how}, on "
        f"{data.name or '?'} "
        f"({data.n_train or 0:,} training / {data.n_test or 0:,} test examples) "
        f"({cfg.train.optimizer}, learning rate "
        f"{cfg.train.lr:g}, {cfg.train.schedule} schedule, batch {cfg.train.batch_size}, "
        f"dropout {cfg.model.dropout:g}).",
        *_profile_note(cfg.profile),
        f"On the {s.split} set ({s.n_examples:,} examples) a member reaches "
        f"{pct(np.mean(accs))} accuracy on average (range {pct(min(accs))} to "
        f"{pct(max(accs))})."
        + (
            f" Training took {sum(known):.0f} s of member time in total."
            if known and not imported
            else ""
        ),
        'Each section names the figure of Fort, Hu & Lakshminarayanan (2019), "Deep Ensembles: '
        'A Loss Landscape Perspective", or of the seed notebooks it reproduces, and sets this '
        "run's numbers beside the published ones. " + references.comparison_note(dataset_name(ctx)),
        *warned(s.warnings),
    ]
    deep_10 = curve_value(ctx, "deep", 10)
    comparison = compare(
        ctx,
        "run",
        [
            ("single_accuracy", f"{pct(s.single['accuracy'], 2)} (mean of {M})"),
            (
                "deep_10_accuracy",
                pct(deep_10, 1) if deep_10 is not None else f"n/a ({count(M, 'member')})",
            ),
        ],
        "The seed notebooks train 40 epochs with Adam and a step schedule.",
    )
    tables = [
        comparison,
        Table(
            "summary",
            ["setting", "value"],
            _settings_rows(ctx, n_params),
            "Data, model and recipe; every setting is in the configuration table below.",
            align_numbers=False,
        ),
        Table(
            "members",
            [
                *MEMBER_COLUMNS[:8],
                f"late_disagreement_last_{s.disagreement.late_window}",
                *MEMBER_COLUMNS[8:],
            ],
            _member_rows(ctx),
            f"Final snapshot of each member on the {s.split} set.",
        ),
        provenance.config_table(ctx),
        provenance.environment_table(ctx),
        provenance.timings_table(ctx),
    ]
    return Section(
        "run",
        "Run summary",
        reading,
        tables=tables,
        reproduces="The setup of Fort et al. (2019), Section 3 (independent members trained "
        "from random initialisations, one snapshot per epoch), and the seed notebooks' training.",
    )


def curve_value(ctx: ReportContext, family: str, size: int, metric: str = "accuracy"):
    """The mean of `metric` for `family` at ensemble size `size`, or None when not computed."""
    if not ctx.has(S.ENSEMBLE_CURVES):
        return None
    c = ctx.csv(S.ENSEMBLE_CURVES)
    sel = (c["family"] == family) & (c["size"] == size) & (c["metric"] == metric)
    return float(c["mean"][sel][0]) if sel.any() else None


def _profile_note(profile: str) -> list[str]:
    """The run's profile said up front: a quick run's numbers are not the paper's."""
    if not profile:
        return []
    from modescape.profiles import describe

    return [
        f"Sized by {describe(profile)}; the paper's settings are the default "
        "(`--profile paper`). Every number the profile changed is in the configuration table "
        "and in each study's settings, so compare with the paper's values with that in mind."
    ]


def _settings_rows(ctx: ReportContext, n_params: int) -> list[list[Any]]:
    run, s, cfg = ctx.run, ctx.summary, ctx.run.config
    manifest, data = run.manifest, run.data_summary
    n = f"{data.n_train} / {data.n_val} / {data.n_test}"
    return [
        ["run", str(run.path)],
        ["profile", cfg.profile or "paper (the paper's settings)"],
        ["created", manifest.created],
        ["dataset", data.name],
        ["examples (train / val / test)", n],
        ["architecture", cfg.model.arch],
        ["variant", cfg.model.variant],
        ["parameters", n_params],
        ["dropout", cfg.model.dropout],
        ["recipe", cfg.train.recipe],
        [
            "optimizer, lr, schedule",
            f"{cfg.train.optimizer}, {cfg.train.lr:g}, {cfg.train.schedule}",
        ],
        ["batch size", cfg.train.batch_size],
        ["epochs", ctx.epochs[-1]],
        ["members", len(ctx.members)],
        ["base seed", cfg.seed],
        ["analysis split", s.split],
        ["weights compared", f"{s.parameters.selection} ({s.parameters.count:,})"],
        ["modescape", manifest.modescape_version],
        ["git commit", manifest.versions.get("modescape_git_commit", "not recorded")],
    ]


def _member_rows(ctx: ReportContext) -> list[list[Any]]:
    s, seeds = ctx.summary, ctx.run.manifest.seeds
    rows = []
    for i, m in enumerate(ctx.members):
        r, info = s.single_per_member[i], ctx.member_infos[i]
        rows.append(
            [
                m, seeds.get(f"member_{m}", ""), info.state, info.epoch,
                frac(r["accuracy"]), sig(r["nll"]), sig(r["brier"]), frac(r["ece"]),
                frac(s.disagreement.late_within_per_member[i]),
                frac(s.cosine.consecutive_late_min_per_member[i], 6),
                sig(info.time_s),
            ]
        )  # fmt: skip
    return rows


def _parameter_count(run: Run) -> int:
    from modescape.models.architectures import count_parameters

    return count_parameters(run.build_model())
