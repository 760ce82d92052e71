"""Training engine: fast-reid's DefaultTrainer extended for canu-plugin."""
from canu_plugin.engine.setup import setup_cfg
from canu_plugin.engine.trainer import Trainer, datasets_root, set_datasets_root

__all__ = ["Trainer", "setup_cfg", "datasets_root", "set_datasets_root"]
