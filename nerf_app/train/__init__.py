"""Training framework shared by every mode: configs, run folders, the Task interface, the loop."""
from .config import BaseConfig, TrainSettings, load_config
from .run import RunDir
from .task import Task
from .trainer import Trainer, TrainResult, seed_everything

__all__ = ["BaseConfig", "TrainSettings", "load_config", "RunDir", "Task", "Trainer", "TrainResult",
           "seed_everything"]
