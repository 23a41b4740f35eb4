"""Best-of-n alignment: the logic behind the Snakemake workflow, importable and testable on its own."""

__version__ = "0.1.0"
