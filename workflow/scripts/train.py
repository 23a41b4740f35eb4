"""One alignment run: on one device in this process, or on K GPUs through `accelerate launch`."""

from bonbon.warm import hand_over

hand_over(globals())  # the job runs in a warm worker (imports done) where one is up: bonbon.warm

from bonbon.jobs import setup_job
from bonbon.train import config_from_dict, launch_or_train

snakemake = globals()["snakemake"]
log, _ = setup_job(snakemake, model_job=True)
p = snakemake.params
# the result-affecting settings, then the rest
cfg = config_from_dict({**p.training, **p.runtime["training"]})
launch_or_train(p.model, snakemake.input.pairs, snakemake.input.ref_logps, p.out, cfg,
                gpus=int(snakemake.resources.get("gpu", 0)), accelerate_config=p.runtime["accelerate"],
                log_path=snakemake.log[0])
