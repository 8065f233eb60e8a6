"""The recipe of mortazavi2020: each DVC step and the module whose `stage()` runs it (vgs/recipe.py).
dvc.yaml runs them as `python stages/run.py mortazavi2020 <step> [<run>]`."""
STEPS = {
    "train": "vgs.methods.mortazavi2020.train",
    "export": "vgs.methods.mortazavi2020.export",
    "evaluate": "vgs.methods.mortazavi2020.evaluate",
    "report": "vgs.methods.mortazavi2020.report",
}
