# Named targets (`all`, the default, is in the Snakefile: Snakemake takes the default target
# only from the main file). Each target asks only for its files, so Snakemake reruns only
# what they need; a single run is also a target by its path:
#   snakemake --cores 2 results/runs/digits/digits/no_reweight/seed0/metrics.json   (<set>/<dataset>/...)


rule data:
    input:
        [paths.prepared(d) for d in EXP.datasets],


rule runs:
    input:
        metrics_of(EXP.runs()),


rule baselines:
    input:
        EXP.baseline_metrics(),


rule tables:
    input:
        [f for t in EXP.set_tables() for f in EXP.table_outputs(t)],


rule figures:
    input:
        EXP.set_figures(),


rule table1:
    input:
        EXP.table_outputs("table1"),


rule table2:
    input:
        EXP.table_outputs("table2"),


rule table3:
    input:
        EXP.table_outputs("table3"),


rule fig3:
    input:
        EXP.figure_outputs("fig3"),


rule fig4:
    input:
        EXP.figure_outputs("fig4"),


rule fig5:
    input:
        EXP.figure_outputs("fig5"),


rule fig6:
    input:
        EXP.figure_outputs("fig6"),


rule curves:
    input:
        EXP.figure_outputs("curves"),


rule confusion:
    input:
        EXP.figure_outputs("confusion"),


rule diagnosis:
    input:
        EXP.diagnosis_outputs(),
