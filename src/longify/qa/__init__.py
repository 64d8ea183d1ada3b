"""Extractive QA: benchmark loaders (``tasks``), official metrics (``metrics``), scoring (``score``)."""
