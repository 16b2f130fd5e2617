# One target per ablation of the paper: its training runs and its table or figure.
#   snakemake --cores 2 ablation_fig3      MoCo / w/o cross-cluster ID / w/o online CD / SCL
#   snakemake --cores 2 ablation_fig4      single-task models against SCL
#   snakemake --cores 2 ablation_table3    SCL with and without hard-sample re-weighting
# The datasets and seeds come from experiment_sets.<set>.ablations and ablation_seeds.
# The runs themselves are the `train` rule's; variants are named in params.yaml (variants:).


rule ablation_fig3:
    input:
        metrics_of(EXP.product_runs("fig3")),
        EXP.figure_outputs("fig3"),


rule ablation_fig4:
    input:
        metrics_of(EXP.product_runs("fig4")),
        EXP.figure_outputs("fig4"),


rule ablation_table3:
    input:
        metrics_of(EXP.product_runs("table3")),
        EXP.table_outputs("table3") if EXP.product_datasets("table3") else [],


rule ablations:
    input:
        rules.ablation_fig3.input,
        rules.ablation_fig4.input,
        rules.ablation_table3.input,
