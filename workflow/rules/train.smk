# One SCL training run: results/runs/<set>/<dataset>/<variant>/seed<k>/.
#
# A run reruns when its identity changes: its method settings or the training code
# (scl.config.run_identity, the `identity` param). `scl train` gets the resolved settings
# (--settings JSON), so what Snakemake compared is what trains, --configfile included.
# Declared outputs are the files written at the end of a run (metrics.json last = complete).
# checkpoint.pt and features*.npz are deliberately not outputs: Snakemake deletes a job's
# outputs before running it, and an interrupted run must keep its checkpoint to resume.
# `scl train --restart-if-changed` resumes a checkpoint of the same identity, and discards one
# of another. Wall-clock times go to timing.json beside (never compared, never versioned).
# scl.gpu_slots gives a job holding a GPU a device of its own (CUDA_VISIBLE_DEVICES; nothing
# to do on a CPU machine or inside a SLURM job). mem_mb and runtime are what a cluster job
# asks for (params.yaml experiment_sets.<set>.resources; a retry gets twice the time).


rule train:
    input:
        data=rules.prepare.output[0],
    output:
        metrics=f"{RUN_DIR}/{paths.RUN_METRICS}",
        log=f"{RUN_DIR}/{paths.RUN_LOG}",
        assignments=f"{RUN_DIR}/{paths.RUN_ASSIGNMENTS}",
    params:
        identity=run_identity,
        settings=run_settings,
        run_dir=lambda wildcards, output: Path(output.metrics).parent,
    wildcard_constraints:
        seed=r"\d+",
    log:
        f"logs/train/{SET_NAME}/{{dataset}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"benchmarks/train/{SET_NAME}/{{dataset}}/{{variant}}/seed{{seed}}.tsv"
    threads: EXP.threads
    resources:
        gpu=train_gpu,
        mem_mb=job_mem_mb("train"),
        runtime=job_runtime("train"),
    conda:
        "../envs/scl.yaml"
    shell:
        """
        python -m scl.gpu_slots --gpus {resources.gpu} -- \
            scl train --settings {params.settings} --data {input.data} --out {params.run_dir} \
            --restart-if-changed --no-progress > {log} 2>&1
        """
