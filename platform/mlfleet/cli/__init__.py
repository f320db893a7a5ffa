"""The ``mlfleet`` console script."""
