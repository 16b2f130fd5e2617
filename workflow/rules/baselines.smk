# Classical clustering on raw pixels (Table 1's K-means, SC, AC, NMF rows): scl baseline.
# Spectral and agglomerative clustering run on at most baselines.<method>.max_samples images.


rule baseline:
    input:
        data="data/prepared/{dataset}.npz",
    output:
        metrics="results/baselines/{dataset}/{method}/seed{seed}/metrics.json",
    params:
        args=baseline_args,
    log:
        "logs/baselines/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/baselines/{dataset}/{method}/seed{seed}.tsv"
    threads: 1
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl baseline {wildcards.method} --dataset {wildcards.dataset} --data {input.data} \
            --seed {wildcards.seed} --out {output.metrics} {params.args} > {log} 2>&1
        """
