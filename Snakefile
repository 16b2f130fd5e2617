# SCL pipeline: data -> training runs (per dataset/variant/seed) -> baselines -> tables/figures.
# Every rule calls the `scl` command line; settings come from params.yaml only, and what the
# chosen experiment set runs is computed by scl/experiments.py (workflow/rules/common.smk adapts it).
#   snakemake --cores 8 all                            the experiment set named in params.yaml
#   snakemake --cores 2 all --config experiment_set=smoke
#   snakemake --cores 2 ablation_table3                one ablation (its runs + its table)
#   snakemake --report results/report.html             one HTML file with the tables and figures
# docs/PIPELINE.md has the targets, the experiment sets and the DVC push/pull cycle.

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from scl.config import ConfigError, load_params, validate_params

min_version("9.0")


configfile: "params.yaml"


# Settings are checked before any job starts: first scl's own check, whose messages name the
# key and suggest the fix, then Snakemake's validation against the same JSON schema.
# load_params reads the file strictly (a key given twice is refused: Snakemake's reader keeps
# the last); validate_params also turns --config strings ("5", "5e-2") into the numbers meant.
try:
    load_params("params.yaml")
    validate_params(config, "params.yaml (with --config)")
except ConfigError as e:
    raise WorkflowError(f"invalid settings, nothing was run:\n{e}") from None
validate(config, "workflow/schemas/params.schema.json")


include: "workflow/rules/common.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/report.smk"


# The default target: every run, table and figure of the experiment set.
rule all:
    default_target: True
    input:
        all_outputs(),
