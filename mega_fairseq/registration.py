"""The plugin's entrance into fairseq: importing any of ``mega_fairseq.models``, ``.tasks`` or
``.criterions`` imports this module first, which applies :mod:`mega_fairseq.fairseq_fixes` and
registers all three with fairseq, whichever was imported.

How fairseq gets there:

- ``--user-dir mega_fairseq`` (every fairseq command, ``common.user_dir`` in Hydra configs, the
  ``user_dir`` argument of ``from_pretrained``): fairseq's ``utils.import_user_module`` imports
  the package and then ``mega_fairseq.tasks.*`` and ``mega_fairseq.models.*``;
- Python: ``import mega_fairseq.models`` (or a model class from it, e.g. to call
  ``MegaLanguageModel.from_pretrained``) before asking fairseq for the plugin's models or tasks
  (``checkpoint_utils.load_model_ensemble``, ``tasks.setup_task``).

One case needs the second way: ``import_user_module`` imports the package and its tasks and
models only when ``mega_fairseq`` is not in ``sys.modules`` yet (it skips a user dir imported
before). A process that imported ``mega_fairseq`` or its layers before fairseq reads
``--user-dir`` (an embedding program that later runs a fairseq command in-process, a process
pool preloading the package) must ``import mega_fairseq.models`` itself; fairseq would otherwise
report the plugin's ``--task`` or ``--arch`` as an invalid choice.
"""

from . import fairseq_fixes

fairseq_fixes.apply()

from . import criterions, models, tasks  # noqa: E402,F401  (a package imported first completes here)
