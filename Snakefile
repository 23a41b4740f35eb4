# Best-of-n alignment: BoNBoN, DPO and IPO from reference samples to pairs (and, in later stages, to
# trained policies, their evaluation and a report). See README.md.
import os

from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces the embedded default instead of being merged into it: merging would keep
# the toy dataset in the paper's setup. The default is found next to this file, so that `-d DIR`
# (a relative path would be read from DIR) works without --configfile.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/exact.smk"
include: "workflow/rules/export.smk"


rule all:
    default_target: True
    input:
        all_outputs() + export_outputs(),
