# One SCL training run: results/runs/<dataset>/<variant>/seed<k>/.
#
# Declared outputs are the files written at the end of a run (metrics.json last = complete).
# checkpoint.pt and features_init.npz are deliberately not outputs: Snakemake deletes a
# job's outputs before running it, and an interrupted run must keep its checkpoint to resume
# (`scl train` resumes from it). settings.sha256 records the settings the checkpoint belongs
# to: when the settings changed (a params rerun) the old checkpoint is discarded (--restart).


rule train:
    input:
        data="data/prepared/{dataset}.npz",
    output:
        metrics="results/runs/{dataset}/{variant}/seed{seed}/metrics.json",
        log="results/runs/{dataset}/{variant}/seed{seed}/log.jsonl",
        assignments="results/runs/{dataset}/{variant}/seed{seed}/assignments.npz",
    params:
        settings=settings_hash,
        overrides=train_overrides,
        run_dir=lambda wildcards, output: Path(output.metrics).parent,
    log:
        "logs/train/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{dataset}/{variant}/seed{seed}.tsv"
    threads: THREADS
    resources:
        gpu=train_gpu,
    conda:
        "../envs/scl.yaml"
    shell:
        """
        restart=""
        if [ -f {params.run_dir}/checkpoint.pt ] && [ "$(cat {params.run_dir}/settings.sha256 2>/dev/null)" != "{params.settings}" ]; then
            restart="--restart"
        fi
        mkdir -p {params.run_dir} && echo {params.settings} > {params.run_dir}/settings.sha256
        scl train --dataset {wildcards.dataset} --variant {wildcards.variant} --seed {wildcards.seed} \
            --data {input.data} --out {params.run_dir} {params.overrides} --set threads={threads} \
            --no-progress $restart > {log} 2>&1
        """
