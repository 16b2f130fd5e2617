"""One short training trial behind the `folder` defaults of params.yaml (results/folder-demo).

    python workflow/scripts/folder_trial.py OUT_DIR '{"hue": [-0.5, 0.5]}' -- scl train args...

The JSON object edits the `strong_color` augmentation recipe for this process only (keys:
crop_scale, hue, grayscale_p), so recipe variants can be compared without editing
scl/augment.py; the remaining arguments go to `scl train` unchanged.
"""

import dataclasses
import json
import sys

from scl import augment
from scl.cli import main

out, edits, rest = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
rest = rest[1:] if rest[:1] == ["--"] else rest
recipe = augment._RECIPES["strong_color"]
changes = {}
if "crop_scale" in edits:
    changes["crop_scale"] = tuple(edits["crop_scale"])
if "grayscale_p" in edits:
    changes["grayscale_p"] = float(edits["grayscale_p"])
if "hue" in edits:
    changes["jitter"] = tuple(j if j[0] != "hue" else ("hue", *edits["hue"]) for j in recipe.jitter)
augment._RECIPES["strong_color"] = dataclasses.replace(recipe, **changes)
print("recipe:", augment._RECIPES["strong_color"], file=sys.stderr)
sys.exit(main(["-v", "train", "--out", out, *rest]))
