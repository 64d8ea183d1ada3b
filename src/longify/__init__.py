"""longify: turn short-context encoders into long-context Longformers, pretrain them, and measure them on QA."""

__version__ = "0.1.0"
