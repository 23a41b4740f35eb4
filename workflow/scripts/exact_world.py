"""The exact best-of-n check: the study's table (Parquet and HTML) and its figure."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from pathlib import Path

import pandas as pd

from bonbon.exact import exact_summary, limit_study, plot_exact_world, run_study
from bonbon.jobs import setup_job
from bonbon.tables import write_parquet

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)  # torch threads; the tabular fits run on the CPU
settings = dict(snakemake.params.exact)
limit_sizes = tuple(settings.pop("limit_sizes"))
study = run_study(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
frames = [study]
if limit_sizes:
    frames.append(limit_study(sizes=limit_sizes, n_values=tuple(settings["n_values"]),
                              alphas=tuple(settings["alphas"]), max_iter=settings["max_iter"],
                              tolerance=settings["tolerance"]))
table = pd.concat(frames, ignore_index=True)
write_parquet(table, snakemake.output.table)
summary = exact_summary(table)
log.info("exact world, infinite-data optima and largest pair count:\n%s", summary.to_string(index=False))
fmt = lambda v: f"{v:.4g}"  # noqa: E731
Path(snakemake.output.html).write_text(
    "<h3>Summary: π_n, and every loss at the largest pair count and on the exact pair distribution</h3>"
    + summary.to_html(index=False, float_format=fmt, na_rep="–")
    + "<h3>All rows</h3>" + table.to_html(index=False, float_format=fmt, na_rep="–")
)
plot_exact_world(table, snakemake.output.png)
log.info("wrote %s", ", ".join(snakemake.output))
