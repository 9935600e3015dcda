"""MLflow and Hydra glue: runs, sweeps, plots. Knows nothing of the models' insides."""
