"""The data contract: its YAML schema (``schema``) and the one reading of it (``semantics``).

Every reader of a contract (batch validation, the gateway, the profile, the training
pipeline, the MLflow signature, the drift monitor) asks ``semantics``, so a value means
the same thing everywhere.
"""
