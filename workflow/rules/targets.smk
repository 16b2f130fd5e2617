# Named targets (`all`, the default, is in the Snakefile: Snakemake takes the default target
# only from the main file). Each target asks only for its files, so Snakemake reruns only
# what they need; a single run is also a target by its path:
#   snakemake --cores 2 results/runs/digits/no_reweight/seed0/metrics.json


rule data:
    input:
        [prepared(d) for d in DATASETS],


rule runs:
    input:
        set_runs(),


rule baselines:
    input:
        set_baselines(),


rule tables:
    input:
        [f for t in set_tables() for f in table_outputs(t)],


rule figures:
    input:
        set_figures(),


rule table1:
    input:
        table_outputs("table1"),


rule table2:
    input:
        table_outputs("table2"),


rule table3:
    input:
        table_outputs("table3"),


rule fig3:
    input:
        figure_outputs("fig3"),


rule fig4:
    input:
        figure_outputs("fig4"),


rule fig5:
    input:
        figure_outputs("fig5"),


rule fig6:
    input:
        figure_outputs("fig6"),


rule curves:
    input:
        figure_outputs("curves"),


rule confusion:
    input:
        figure_outputs("confusion"),


rule diagnosis:
    input:
        diagnosis_outputs(),
