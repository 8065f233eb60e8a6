from vgs.train.trainer import (Trainer, TrainTask, fingerprint, load_checkpoint, load_finished_checkpoint, pick_device,
                               save_checkpoint)

__all__ = ["Trainer", "TrainTask", "fingerprint", "load_checkpoint", "load_finished_checkpoint", "pick_device",
           "save_checkpoint"]
