"""Figures from constructed records: the seed mean and band, what gets drawn, PNG + PDF files."""
import math

import pytest
from matplotlib.image import imread

from normexp.analysis.plots import convergence_figure, grad_stats_figure, mean_band, write_plots
from normexp.cli.reproduce import load_table
from normexp.analysis.tables import build_cells
from tests.records import make_record


def test_mean_band_aligns_seeds_on_steps_and_drops_non_finite_values():
    xs, mean, std = mean_band([[(100, 2.0), (200, 1.0)], [(100, 4.0), (200, 3.0), (300, 2.5)],
                               [(100, math.nan), (200, math.inf)]])
    assert xs == [100, 200, 300]
    assert mean == [3.0, 2.0, 2.5]
    assert std == pytest.approx([math.sqrt(2), math.sqrt(2), 0.0])  # sample std of (2, 4) and of (1, 3); one seed: 0
    assert mean_band([]) == ([], [], [])


def test_figures_per_task_with_grad_stats_only_where_recorded(tmp_path):
    spec = load_table("adanorm_table3")
    grads = [{"step": s, "sites": {"enc.0": {"mean": 2e-4, "var": 1e-3 / s}, "enc.1": {"mean": -2e-4, "var": 3e-3 / s}}}
             for s in (10, 20, 30)]
    records = [make_record("iwslt14_deen", norm, seed, 35.0, metric="bleu", grad_stats=grads,
                           train_losses=(3.0, 2.0 - seed / 10), valid_losses=(3.1, 2.5))
               for norm in ("layernorm", "adanorm") for seed in (1, 2)]
    records += [make_record("mnist", "layernorm", 1, 99.0),
                make_record("mnist", "none", 1, status="diverged", train_losses=(2.3, math.inf), valid_losses=(2.4,)),
                make_record("rt", "layernorm", 1, status="running")]  # unfinished runs are not drawn
    cells = build_cells(spec, records)
    paths = write_plots(spec, cells, tmp_path)
    assert sorted(paths) == [f"plots/{name}.{ext}" for name in ("iwslt14_deen-convergence", "iwslt14_deen-grad_stats",
                                                                "mnist-convergence") for ext in ("pdf", "png")]
    for key, path in paths.items():
        assert path.parent == tmp_path and path.name == key.removeprefix("plots/")
        head = path.read_bytes()[:8]
        assert head.startswith(b"%PDF") if path.suffix == ".pdf" else head == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(paths["plots/iwslt14_deen-convergence.png"]).shape
    assert width > 2 * height > 400, "two panels side by side"


def test_what_the_figures_draw():
    spec = load_table("adanorm_table3")
    grads = lambda scale: [{"step": s, "sites": {"enc.0": {"mean": scale, "var": scale / s},  # noqa: E731
                                                 "enc.1": {"mean": -scale, "var": 3 * scale / s}}} for s in (10, 20)]
    records = [make_record("ptb", "layernorm", 1, 89.0, metric="uas", train_losses=(1.0, 0.4), valid_losses=(1.1, 0.9),
                           grad_stats=grads(1e-3)),
               make_record("ptb", "layernorm", 2, 89.2, metric="uas", train_losses=(1.0, 0.6), valid_losses=(1.1, 0.7),
                           grad_stats=grads(3e-3)),
               make_record("ptb", "adanorm", 1, 89.3, metric="uas", train_losses=(1.2, 0.7), valid_losses=(1.0, 0.6))]
    cells = build_cells(spec, records)
    [ptb] = [c for c in spec.columns if c.task == "ptb"]
    train, valid = convergence_figure(spec, cells, ptb).axes
    lines = {line.get_label(): line for line in train.get_lines()}
    assert sorted(lines) == ["AdaNorm (n=1)", "LayerNorm (n=2)"]
    assert list(lines["LayerNorm (n=2)"].get_xdata()) == [100, 200]
    assert list(lines["LayerNorm (n=2)"].get_ydata()) == pytest.approx([1.0, 0.5])  # mean over the two seeds
    assert list(valid.get_lines()[0].get_ydata()) == pytest.approx([1.1, 0.8])
    mean_ax, var_ax = grad_stats_figure(spec, cells, ptb).axes
    [mean_line], [var_line] = mean_ax.get_lines(), var_ax.get_lines()  # AdaNorm recorded no grad stats
    assert mean_line.get_label() == "LayerNorm (n=2)"
    assert list(mean_line.get_ydata()) == pytest.approx([2e-3, 2e-3])  # |±1e-3| and |±3e-3|, averaged over sites, seeds
    assert list(var_line.get_ydata()) == pytest.approx([2 * 2e-3 / 10, 2 * 2e-3 / 20])  # (s + 3s) / 2 per seed
    assert var_ax.get_yscale() == "log"
    assert grad_stats_figure(spec, build_cells(spec, records[2:]), ptb) is None
