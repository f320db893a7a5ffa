"""A model version's monitoring reference, read back from the registry.

Training logs two side files beside every model version: the dataset version's
``profile.json`` (the features binned on the curated data) and ``monitoring.json`` (the
holdout predictions and, for classifiers, the calibration map; see
:mod:`mlfleet.training.reference`). The features the model reads come from the version's
tags, as serving reads them. Blocking (registry calls): prediction sites call
:func:`load_reference` off their event loop, once per version.
"""

from __future__ import annotations

import json

from mlfleet import registry
from mlfleet.monitoring.reference import MonitorReference, build_reference

PROFILE_FILE = "profile.json"
MONITORING_FILE = "monitoring.json"


def load_reference(name: str, version: str) -> MonitorReference | None:
    """The reference live traffic of ``name`` version ``version`` is compared with.

    Returns:
        None for a version registered before training logged ``monitoring.json``: such a
        version is served but not monitored.

    Raises:
        NotFoundError: the model or the version does not exist.
    """
    info = registry.get_version(name, version)
    files = registry.version_artifact_names(name, version)
    if MONITORING_FILE not in files or PROFILE_FILE not in files:
        return None
    monitoring = json.loads(registry.version_artifact(name, version, MONITORING_FILE))
    profile = json.loads(registry.version_artifact(name, version, PROFILE_FILE))
    features = registry.version_features(info.tags, registry.version_contract(name, version))
    return build_reference(name, version, profile, monitoring, features)
