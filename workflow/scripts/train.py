"""One alignment run: on one device in this process, or on K GPUs through `accelerate launch`."""

from bonbon.gpus import claim_gpus
from bonbon.io import set_threads, setup_job_logging
from bonbon.train import config_from_dict, launch_or_train

snakemake = globals()["snakemake"]
log = setup_job_logging(snakemake.log[0])
set_threads(snakemake.threads)
claim_gpus(int(snakemake.resources.get("gpu", 0)))  # distinct GPUs for concurrent local jobs
p = snakemake.params
launch_or_train(p.model, snakemake.input.pairs, snakemake.input.ref_logps, p.out, config_from_dict(p.training),
                gpus=int(snakemake.resources.get("gpu", 0)), accelerate_config=p.accelerate, log_path=snakemake.log[0])
