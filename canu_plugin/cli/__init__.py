"""Command-line programs, installed as console scripts (pyproject.toml) and wrapped by ``tools/*.py``:

| command       | module                     | tools/ wrapper          |
|---------------|----------------------------|-------------------------|
| ``canu-train``  | :mod:`canu_plugin.cli.train`  | ``tools/train_net.py``    |
| ``canu-bench``  | :mod:`canu_plugin.cli.bench`  | ``tools/benchmark.py``, ``tools/demo.py`` |
| ``canu-synth``  | :mod:`canu_plugin.cli.synth`  | ``tools/make_synthetic.py`` |
| ``canu-export`` | :mod:`canu_plugin.cli.export` | ``tools/export_model.py`` |
| ``canu-check-data`` | :mod:`canu_plugin.cli.check_data` | ``tools/check_data.py`` |

Each ``main(argv=None)`` returns an exit code and reports a :class:`~canu_plugin.errors.CanuError`
as one ``error: ...`` line on stderr (exit 2).
"""
