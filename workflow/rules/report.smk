# Tables, figures and the metrics summary, from the set's finished runs and the baselines.
# Each is registered with report() so that `snakemake --report results/report.html`
# gives one HTML file with every table and figure (captions: workflow/report/*.rst).
# `code` params: a change to the report code redoes the report (scl.experiments.REPORT_CODE).


rule table:
    input:
        table_inputs,
    output:
        md=f"{EXP.tables_dir}/{{table}}.md",
        csv=report(
            f"{EXP.tables_dir}/{{table}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        tex=f"{EXP.tables_dir}/{{table}}.tex",
    params:
        args=table_args,
        code=CODE["report"],
        runs=EXP.runs_root,
        baselines=paths.BASELINES_DIR,
        prefix=lambda wildcards, output: output.md.removesuffix(".md"),
    wildcard_constraints:
        table="|".join(TABLES),
    log:
        f"logs/report/{SET_NAME}/{{table}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl table {wildcards.table} --runs {params.runs} --baselines {params.baselines} \
            --out {params.prefix} {params.args} > {log} 2>&1
        """


rule figure_ablation:
    input:
        lambda wildcards: metrics_of(EXP.product_runs(wildcards.figure)),
    output:
        png=report(
            f"{EXP.figures_dir}/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}", "dataset": "ablation datasets"},
        ),
    params:
        datasets=lambda wildcards: " ".join(EXP.product_datasets(wildcards.figure)),
        seeds=lambda wildcards: " ".join(map(str, EXP.product_seeds(wildcards.figure))),
        code=CODE["report"],
        runs=EXP.runs_root,
    wildcard_constraints:
        figure="|".join(ABLATION_FIGURES),
    log:
        f"logs/report/{SET_NAME}/{{figure}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl figure {wildcards.figure} --runs {params.runs} --out {output.png} --datasets {params.datasets} \
            --seeds {params.seeds} > {log} 2>&1
        """


rule figure_dataset:
    input:
        runs=figure_runs,
        data=rules.prepare.output[0],
    output:
        png=report(
            f"{EXP.figures_dir}/{{figure}}_{{dataset}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}", "dataset": "{dataset}"},
        ),
    params:
        seed=EXP.figure_seed,
        code=CODE["report"],
        runs=EXP.runs_root,
    wildcard_constraints:
        figure="|".join(DATASET_FIGURES),
    log:
        f"logs/report/{SET_NAME}/{{figure}}_{{dataset}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl figure {wildcards.figure} --runs {params.runs} --out {output.png} --dataset {wildcards.dataset} \
            --seed {params.seed} --data {input.data} > {log} 2>&1
        """


rule diagnose:
    input:
        runs=diagnosis_runs,
        data=rules.prepare.output[0],
    output:
        md=f"{EXP.tables_dir}/diagnosis_{{dataset}}.md",
        json=f"{EXP.tables_dir}/diagnosis_{{dataset}}.json",
    params:
        variants=lambda wildcards: " ".join(EXP.diagnosis_variants(wildcards.dataset)),
        seeds=" ".join(map(str, EXP.seeds)),
        code=CODE["report"],
        runs=EXP.runs_root,
        prefix=lambda wildcards, output: output.md.removesuffix(".md"),
    log:
        f"logs/report/{SET_NAME}/diagnosis_{{dataset}}.log",
    benchmark:
        f"benchmarks/report/{SET_NAME}/diagnosis_{{dataset}}.tsv"
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl diagnose --dataset {wildcards.dataset} --runs {params.runs} --variants {params.variants} \
            --seeds {params.seeds} --data {input.data} --out {params.prefix} > {log} 2>&1
        """


rule metrics_summary:
    input:
        runs=metrics_of(EXP.runs()),
        baselines=EXP.baseline_metrics(),
    output:
        summary=EXP.summary,
        metrics=directory(EXP.metrics_dir),
        plots=directory(EXP.plots_dir),
    params:
        experiment_set=SET_NAME,
        code=CODE["report"],
    log:
        f"logs/report/{SET_NAME}/metrics_summary.log",
    conda:
        "../envs/scl.yaml"
    script:
        "../scripts/metrics_summary.py"


# What a user sorting their own images wants from a run (scl clusters, scl/report/clusters.py):
# clusters.csv (path, cluster, confidence), sheets/cluster_NN.png and index.md.
rule clusters:
    input:
        data=paths.prepared("{dataset}"),
        metrics=lambda w: EXP.run_metrics(Run(w.dataset, "scl", int(w.seed))),
    output:
        csv=str(Path(paths.clusters_dir(SET_NAME, "{dataset}", "{seed}"), "clusters.csv")),
        index=str(Path(paths.clusters_dir(SET_NAME, "{dataset}", "{seed}"), "index.md")),
    params:
        run=lambda w: EXP.run_dir(Run(w.dataset, "scl", int(w.seed))),
        out=lambda w, output: Path(output.csv).parent,
        code=CODE["report"],
    wildcard_constraints:
        seed=r"\d+",
    log:
        f"logs/clusters/{SET_NAME}/{{dataset}}/seed{{seed}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        "scl clusters --run {params.run} --data {input.data} --out {params.out} > {log} 2>&1"
