"""``longify report STUDY_DIR``: tables, long-vs-short significance and plots from a study's result files.

Reads files only (results.jsonl, question_scores.jsonl, pretrain_curves.jsonl, the jobs' results.json); it
never imports training code.
"""

from longify.report.build import build_report

__all__ = ["build_report"]
