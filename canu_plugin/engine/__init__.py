"""Training engine: fast-reid's DefaultTrainer extended for canu-plugin."""
from canu_plugin.data.root import datasets_root, set_datasets_root
from canu_plugin.engine.setup import seed_from_config, setup_cfg
from canu_plugin.engine.trainer import Trainer

__all__ = ["Trainer", "setup_cfg", "seed_from_config", "datasets_root", "set_datasets_root"]
