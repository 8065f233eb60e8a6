"""The recipe of leidal2017: each DVC step and the module whose `stage()` runs it (vgs/recipe.py).
dvc.yaml runs them as `python stages/run.py leidal2017 <step> [<run>]`."""
STEPS = {
    "train": "vgs.methods.leidal2017.train",
    "export": "vgs.methods.leidal2017.export",
    "evaluate": "vgs.methods.leidal2017.evaluate",
    "report": "vgs.methods.leidal2017.report",
}
