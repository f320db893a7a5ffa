"""Helpers shared by the tests, imported the same way everywhere: ``from tests.support... import``.

Fixtures live in ``tests/conftest.py``; test modules import from here and from nowhere
else in ``tests``:

- ``messy``: the issue's example contract, three messy sources and the loans data.
- ``cli``: running the ``mlfleet`` CLI as a user would.
- ``ray_head``: a real ``ray start --head`` cluster for job-submission tests, and a second
  node joined to it (``ray_worker`` is that node's process) for multi-node tests.
- ``net``: free local ports.
- ``postgres``: the production profile's PostgreSQL and MLflow tracking server, for real.
- ``waiting``: waiting on a condition with a deadline, for what offers nothing to wait on.
- ``monitoring``: model references, sketches and flushes for the drift monitor's tests.
- ``fleet``: small fleets of loan models, served on the session's Ray; stopping the monitor.
- ``browser``: Debian's chromium for Playwright, installed when missing.
- ``deploy_configs``: the settings and lock that cluster.yaml and deploy/ are checked against.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
