# Classical clustering on raw pixels (Table 1's K-means, SC, AC, NMF rows): scl baseline.
# Spectral and agglomerative clustering run on at most baselines.<method>.max_samples images.
# Baselines read no experiment-set setting, so every set shares results/baselines/.


rule baseline:
    input:
        data=rules.prepare.output[0],
    output:
        metrics=paths.baseline_metrics("{dataset}", "{method}", "{seed}"),
    params:
        args=baseline_args,
        code=CODE["baseline"],
    wildcard_constraints:
        seed=r"\d+",
    log:
        "logs/baselines/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/baselines/{dataset}/{method}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=job_mem_mb("baseline"),
        runtime=job_runtime("baseline"),
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl baseline {wildcards.method} --dataset {wildcards.dataset} --data {input.data} \
            --seed {wildcards.seed} --out {output.metrics} {params.args} > {log} 2>&1
        """
