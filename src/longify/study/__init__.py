"""``longify study``: a YAML spec of models x stages x eval sets x seeds, planned as a DAG of jobs with
content ids, run resumably (subprocesses, torchrun, or Slurm through submitit), collected into
``results.jsonl`` and ``pretrain_curves.jsonl``."""
