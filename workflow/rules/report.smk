# Tables, figures and the metrics summary, from the finished runs and baselines.
# Each is registered with report() so that `snakemake --report results/report.html`
# gives one HTML file with every table and figure (captions: workflow/report/*.rst).


rule table:
    input:
        table_inputs,
    output:
        md=f"{TABLES_DIR}/{{table}}.md",
        csv=report(
            f"{TABLES_DIR}/{{table}}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        tex=f"{TABLES_DIR}/{{table}}.tex",
    params:
        args=table_args,
        prefix=lambda wildcards, output: output.md.removesuffix(".md"),
    wildcard_constraints:
        table="table1|table2|table3",
    log:
        f"logs/report/{SET_NAME}/{{table}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl table {wildcards.table} --runs results/runs --baselines results/baselines \
            --out {params.prefix} {params.args} > {log} 2>&1
        """


rule figure_ablation:
    input:
        lambda wildcards: product_runs(wildcards.figure),
    output:
        png=report(
            f"{FIGURES_DIR}/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}", "dataset": "ablation datasets"},
        ),
    params:
        datasets=lambda wildcards: " ".join(product_datasets(wildcards.figure)),
        seeds=lambda wildcards: " ".join(map(str, product_seeds(wildcards.figure))),
    wildcard_constraints:
        figure="fig3|fig4",
    log:
        f"logs/report/{SET_NAME}/{{figure}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl figure {wildcards.figure} --runs results/runs --out {output.png} --datasets {params.datasets} \
            --seeds {params.seeds} > {log} 2>&1
        """


rule figure_dataset:
    input:
        runs=figure_runs,
        data="data/prepared/{dataset}.npz",
    output:
        png=report(
            f"{FIGURES_DIR}/{{figure}}_{{dataset}}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}", "dataset": "{dataset}"},
        ),
    params:
        seed=figure_seed(),
    wildcard_constraints:
        figure="fig5|fig6|curves|confusion",
    log:
        f"logs/report/{SET_NAME}/{{figure}}_{{dataset}}.log",
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl figure {wildcards.figure} --runs results/runs --out {output.png} --dataset {wildcards.dataset} \
            --seed {params.seed} --data {input.data} > {log} 2>&1
        """


rule diagnose:
    input:
        runs=diagnosis_runs,
        data="data/prepared/{dataset}.npz",
    output:
        md=f"{TABLES_DIR}/diagnosis_{{dataset}}.md",
        json=f"{TABLES_DIR}/diagnosis_{{dataset}}.json",
    params:
        variants=lambda wildcards: " ".join(diagnosis_variants(wildcards.dataset)),
        seeds=" ".join(map(str, SEEDS)),
        prefix=lambda wildcards, output: output.md.removesuffix(".md"),
    log:
        f"logs/report/{SET_NAME}/diagnosis_{{dataset}}.log",
    benchmark:
        f"benchmarks/report/{SET_NAME}/diagnosis_{{dataset}}.tsv"
    conda:
        "../envs/scl.yaml"
    shell:
        """
        scl diagnose --dataset {wildcards.dataset} --runs results/runs --variants {params.variants} \
            --seeds {params.seeds} --data {input.data} --out {params.prefix} > {log} 2>&1
        """


rule metrics_summary:
    input:
        runs=set_runs(),
        baselines=set_baselines(),
    output:
        summary=SUMMARY,
        metrics=directory(METRICS_DIR),
        plots=directory(PLOTS_DIR),
    params:
        experiment_set=SET_NAME,
    log:
        f"logs/report/{SET_NAME}/metrics_summary.log",
    conda:
        "../envs/scl.yaml"
    script:
        "../scripts/metrics_summary.py"
