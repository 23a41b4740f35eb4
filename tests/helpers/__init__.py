"""Plain helpers (functions, constants, classes) shared by several test modules, so that no test module
imports another; shared fixtures live in conftest.py. helpers.configs needs only yaml and snakemake,
helpers.tiny and helpers.training import torch and transformers."""
