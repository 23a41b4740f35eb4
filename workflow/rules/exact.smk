# The exact best-of-n check (issue 13, parts 4 and 5): a small world where pi_n, win rates and KLs are
# enumerated, and tabular policies trained with the project's losses are compared with pi_n exactly.
# It needs no model and no other stage: config key `exact`, code in bonbon.exact.


rule exact_world:
    output:
        table="results/exact/exact_world.parquet",
        html=report(
            "results/exact/exact_world.html",
            caption="../report/exact_world.rst",
            category="5. Exact best-of-n check",
            labels={"table": "exact world"},
        ),
        png=report(
            "results/plots/exact_world.png",
            caption="../report/exact_world.rst",
            category="5. Exact best-of-n check",
            labels={"figure": "exact world"},
        ),
    log:
        "logs/exact/exact_world.log",
    benchmark:
        "benchmarks/exact/exact_world.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        exact=canonical(config["exact"]),
        code=code("exact_world.py"),
    script:
        "../scripts/exact_world.py"
