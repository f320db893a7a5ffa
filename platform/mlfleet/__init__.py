"""mlfleet: validated data, tracked training and one serving fleet on Ray (no drift monitor yet)."""

__version__ = "0.1.0"
