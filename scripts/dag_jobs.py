"""Dump a workflow's DAG job by job, as a dry run builds it: the check that a change to the rules is
behaviour-preserving.

    python scripts/dag_jobs.py [--workflow DIR] [--directory DIR] [--configfile A.yaml [B.yaml]]
        [--config KEY=VALUE ...] > jobs.json

Builds the DAG as ``snakemake -n`` does (in ``--directory``, default the working directory, with the
Snakefile of ``--workflow``, default this checkout) and prints one JSON object per job, sorted by rule
and outputs: its rule, whether it is a checkpoint, wildcards, outputs, inputs (with the span of each
named one: one file or a list), log, benchmark, threads, resources, conda env, script, params, and
what Snakemake's rerun triggers compare (bonbon.rerun relies on them): the non-derived params as
recorded, the sorted input paths and the rule's recorded code. Dump the same config and directory
with the checkout before and after a change and diff the two files: equal dumps schedule the same
jobs with the same files and settings, and a run finished with one is finished for the other (the
scripts themselves unchanged). Jobs past an unfinished checkpoint (train) are not in the DAG yet, as
in a dry run: dump a finished run's directory to compare those too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.cli import parse_config
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings


def job_record(workflow, job) -> dict:
    persistence = workflow.persistence
    rule = job.rule
    resources = {k: str(v) for k, v in job.resources.items() if k not in ("_cores", "_nodes")}
    return {
        "rule": rule.name,
        "checkpoint": rule.is_checkpoint,
        "wildcards": dict(job.wildcards_dict),
        "output": list(map(str, job.output)),
        "output_names": {name: list(span) for name, span in job.output._names.items()},
        "input": list(map(str, job.input)),
        "input_names": {name: list(span) for name, span in job.input._names.items()},
        "log": list(map(str, job.log)),
        "benchmark": str(job.benchmark) if job.benchmark else None,
        "threads": job.threads,
        "resources": resources,
        "conda": str(rule.conda_env) if rule.conda_env else None,
        "script": rule.script,
        "params": {name: repr(value) for name, value in job.params._allitems()},
        "rerun_params": persistence._params(job),
        "rerun_input": persistence._input(job),
        "rerun_code": persistence._code(rule),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflow", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--directory", type=Path, default=Path.cwd())
    parser.add_argument("--configfile", nargs="*", type=Path, default=[])
    parser.add_argument("--config", nargs="*", default=[], help="as snakemake's --config")
    args = parser.parse_args()
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(
                configfiles=[p.resolve() for p in args.configfile], config=parse_config(args.config)
            ),
            snakefile=args.workflow.resolve() / "Snakefile",
            workdir=args.directory.resolve(),
        )
        dag_api = workflow_api.dag(dag_settings=DAGSettings())
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        records = [job_record(workflow, job) for job in workflow.dag.jobs]
    records.sort(key=lambda r: (r["rule"], r["output"]))
    json.dump(records, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
