# Download, verify and prepare one dataset into data/prepared/<dataset>.npz (scl prepare).
# Downloads land in data.raw_dir and are reused; ImageNet subsets read data.imagenet_root,
# the `folder` dataset reads data.folder.


rule prepare:
    output:
        paths.prepared("{dataset}"),
    params:
        args=prepare_args,
        missing=prepare_missing_root,
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "benchmarks/prepare/{dataset}.tsv"
    conda:
        "../envs/scl.yaml"
    shell:
        """
        if [ -n "{params.missing}" ]; then echo "scl prepare {wildcards.dataset}: {params.missing}" | tee {log} >&2; exit 2; fi
        scl prepare {wildcards.dataset} --out {output} {params.args} > {log} 2>&1
        """
