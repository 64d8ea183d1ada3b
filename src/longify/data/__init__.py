"""Datasets by name: a registry (data), verified resumable downloads, safe unpacking, name -> path, stats."""

from longify.data.registry import Dataset, FileEntry, Registry, load_registry
from longify.data.store import DownloadResult, data_dir, dataset_path, download, status

__all__ = [
    "Dataset",
    "DownloadResult",
    "FileEntry",
    "Registry",
    "data_dir",
    "dataset_path",
    "download",
    "load_registry",
    "status",
]
