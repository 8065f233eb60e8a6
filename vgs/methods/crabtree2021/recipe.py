"""The recipe of crabtree2021: each DVC step and the module whose `stage()` runs it (vgs/recipe.py).
dvc.yaml runs them as `python stages/run.py crabtree2021 <step> [<run>]`."""
STEPS = {
    "pretrain": "vgs.methods.crabtree2021.pretrain",
    "train": "vgs.methods.crabtree2021.train",
    "export": "vgs.methods.crabtree2021.export",
    "evaluate": "vgs.methods.crabtree2021.evaluate",
    "report": "vgs.methods.crabtree2021.report",
}
