# GGUF models (models.<role>: {gguf: ...}): each file imported once into a plain model directory that
# every later rule loads with from_pretrained (bonbon.gguf_import; bonbon.gguf_import.IMPORTED is this
# folder, which model_dir in common.smk reads).


rule import_gguf:
    input:
        gguf=lambda wc: str(gguf_file(GGUF_IMPORTS[wc.name])),
    output:
        model=model_files(os.path.join(IMPORTED, "{name}")),
        summary=os.path.join(IMPORTED, "{name}", "import_summary.json"),
    log:
        "logs/models/imported/{name}.log",
    benchmark:
        "benchmarks/models/imported/{name}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        out=lambda wildcards, output: os.path.dirname(output.summary),
        code=code("import_gguf.py"),
    script:
        "../scripts/import_gguf.py"
