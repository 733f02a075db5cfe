"""One function per figure of the study, each `figN_name(data..., out_dir) -> [png path, pdf path]`.

    fig1_jacobian_vs_gap(trials, out_dir, hue="hp.nonlinearity", gap="accuracy")   scatter.py
    fig2_transitions(trials, out_dir, hue="hp.nonlinearity")       scatter.py
    fig3_per_point(points, trials, out_dir)                         per_point.py (+ per_point_bounds)
    fig4_pairs(trials, out_dir, gap="accuracy")                     pairs.py (+ pair_differences)
    fig5_manifold(trajectories, out_dir, trials=None)               manifold.py
    fig6_linear_regions(cfg, out_dir, resolution=200, data_root=None)  regions.py (recomputes the trial)
    fig7_regularizers(trials, out_dir)                              regularizers.py (pairs: analysis.intervention)
    fig8_ranking(trials, out_dir, table=None)                       ranking.py (table: analysis.ranking)

Each has a `draw_*` twin that returns the matplotlib Figure (what the tests inspect). Inputs are
the tables of `analysis.load`, usually after `analysis.filter_trials`; empty inputs give a figure
that says why it is empty rather than an error.
"""

from analysis.figures.manifold import draw_manifold, fig5_manifold, trajectory_values
from analysis.figures.pairs import draw_pairs, fig4_pairs, pair_differences
from analysis.figures.per_point import draw_per_point, fig3_per_point, per_point_bounds
from analysis.figures.ranking import draw_ranking, fig8_ranking
from analysis.figures.regions import draw_linear_regions, fig6_linear_regions, region_map
from analysis.figures.regularizers import draw_regularizers, fig7_regularizers
from analysis.figures.scatter import draw_jacobian_vs_gap, draw_transitions, fig1_jacobian_vs_gap, fig2_transitions

__all__ = [
    "draw_jacobian_vs_gap", "draw_linear_regions", "draw_manifold", "draw_pairs", "draw_per_point",
    "draw_ranking", "draw_regularizers", "draw_transitions", "fig1_jacobian_vs_gap", "fig2_transitions",
    "fig3_per_point",
    "fig4_pairs", "fig5_manifold", "fig6_linear_regions", "fig7_regularizers", "fig8_ranking", "pair_differences",
    "per_point_bounds", "region_map", "trajectory_values",
]
