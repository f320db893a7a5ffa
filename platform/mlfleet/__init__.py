"""mlfleet: validated data, tracked training, one serving fleet and drift monitoring on Ray."""

__version__ = "0.1.0"
