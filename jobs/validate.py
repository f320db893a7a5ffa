"""Ray Job entrypoint: validate sources into a dataset version.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/validate.py --contract specs/penguins/contract.yaml SOURCE...

Arguments and exit codes are those of ``mlfleet data validate`` (0 passed, 1 over the
quarantine limit, 2 usage). The job joins the cluster it runs on (Ray sets
RAY_ADDRESS for job drivers), so no address is needed here.
"""

from __future__ import annotations

import sys

from mlfleet.cli.main import main

if __name__ == "__main__":
    main(["data", "validate", *sys.argv[1:]])
