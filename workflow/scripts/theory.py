"""The best-of-n curve: win rate n/(n+1) against KL log n - (n-1)/n."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from pathlib import Path

from bonbon.jobs import setup_job
from bonbon.tables import write_parquet
from bonbon.theory import beta_star, bon_curve

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake)
curve = bon_curve(snakemake.params.n_max)
curve["beta_star"] = [beta_star(n) if n >= 2 else float("nan") for n in curve["n"]]
write_parquet(curve, snakemake.output.table)
Path(snakemake.output.html).write_text(curve.to_html(index=False, float_format=lambda v: f"{v:.4f}",
                                                     na_rep="–"))
log.info("theory curve for n = 1..%d", snakemake.params.n_max)
