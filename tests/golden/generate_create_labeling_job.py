"""Write the golden CreateLabelingJob requests (run by hand; review the diff before committing).

    .venv/bin/python tests/golden/generate_create_labeling_job.py

The tests never call this: they compare against the files it wrote, so the files pin the output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.common.labeling import SageMakerLabelingService
from tests.unit.test_create_labeling_job_golden import CASES, golden_path, golden_spec


def main() -> None:
    written = 0
    for modality, region in CASES:
        path = golden_path(modality, region)
        path.parent.mkdir(parents=True, exist_ok=True)
        request = SageMakerLabelingService.create_request(golden_spec(modality, region))
        path.write_text(json.dumps(request, indent=2, sort_keys=True) + "\n")
        written += 1
    print(f"wrote {written} golden requests under {path.parents[1].relative_to(ROOT)}")


if __name__ == "__main__":
    main()
