"""seq2seq-pipeline: compare seq2seq architectures with Hydra, Lightning and MLflow."""
