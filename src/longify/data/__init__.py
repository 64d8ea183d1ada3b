"""``longify data``: verified resumable downloads of the registered datasets, safe unpacking, stats.
The registry and name -> path are ``longify.catalog`` (the stages resolve names there, below this layer)."""

from longify.data.store import DownloadResult, download, status

__all__ = ["DownloadResult", "download", "status"]
