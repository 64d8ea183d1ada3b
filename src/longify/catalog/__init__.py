"""The datasets longify knows by name: the registry (``registry.json``, checked against
``registry.schema.json``) and name -> folder in the data dir (``names``). Below the stages, which resolve
names here; ``longify.data`` (``longify data list | download | stats``) builds on it."""
