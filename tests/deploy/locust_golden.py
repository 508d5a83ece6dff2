"""Golden renders of charts/locust: each case's manifests as committed, so that a chart change shows in
review. `make chart-locust-golden` writes them anew (python -m tests.deploy.locust_golden);
test_locust_chart_golden.py diffs against them.

The scenarios' text is masked: the ConfigMap's modules and the checksum over them. They are the copy of
loadtests/ that test_locust_chart_files.py checks, and would otherwise put every scenario edit six times
into the goldens. Their names stay: a module added or removed shows here.
"""

from __future__ import annotations

import re

from tests.deploy.golden import Golden
from tests.deploy.locust_chart import LOCUST

MODULE = "MODULE"
CHECKSUM = "CHECKSUM-OF-THE-MODULES"
_CONFIGMAP_SOURCE = "# Source: locust/templates/configmap.yaml\n"
_KEY = re.compile(r"^  ([A-Za-z0-9_.-]+\.py): ")
_CHECKSUM = re.compile(r"^(\s+checksum/loadtests: )[0-9a-f]{64}$", re.MULTILINE)


def masked(manifests: str) -> str:
    documents = manifests.split("\n---\n")
    for index, document in enumerate(documents):
        if _CONFIGMAP_SOURCE in document:
            head, _, data = document.partition("\ndata:\n")
            keys = [match.group(1) for line in data.splitlines() if (match := _KEY.match(line))]
            documents[index] = head + "\ndata:\n" + "".join(f"  {key}: {MODULE}\n" for key in keys).rstrip("\n")
    return _CHECKSUM.sub(rf"\g<1>{CHECKSUM}", "\n---\n".join(documents))


GOLDEN = Golden(LOCUST, masked, "make chart-locust-golden")


if __name__ == "__main__":
    GOLDEN.write()
