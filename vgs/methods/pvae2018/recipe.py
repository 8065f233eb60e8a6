"""The recipe of pvae2018: each DVC step and the module whose `stage()` runs it (vgs/recipe.py).
dvc.yaml runs them as `python stages/run.py pvae2018 <step> [<model>]`."""
STEPS = {
    "train": "vgs.methods.pvae2018.train",
    "export": "vgs.methods.pvae2018.export",
    "evaluate": "vgs.methods.pvae2018.evaluate",
    "generate": "vgs.methods.pvae2018.generate",
    "report": "vgs.methods.pvae2018.report",
}
