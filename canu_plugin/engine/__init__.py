"""Training engine: fast-reid's DefaultTrainer extended for canu-plugin."""
from canu_plugin.engine.setup import setup_cfg
from canu_plugin.engine.trainer import Trainer

__all__ = ["Trainer", "setup_cfg"]
