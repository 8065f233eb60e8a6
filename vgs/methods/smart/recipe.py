"""The recipe of smart: each DVC step and the module whose `stage()` runs it (vgs/recipe.py).
dvc.yaml runs them as `python stages/run.py smart <step> [<style>]`."""
STEPS = {
    "judges": "vgs.methods.smart.judges",
    "train": "vgs.methods.smart.train",
    "evaluate": "vgs.methods.smart.evaluate",
    "report": "vgs.methods.smart.report",
}
