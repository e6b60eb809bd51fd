"""The seed scenario on one machine: k-means on scikit-learn's digits, then a batch transform
of the validation set with the very request dict of SageMaker's low-level example.

Run it with `./scripts/demo.sh` (which makes the virtual environment first).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import joblib
import numpy
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent


def main(workdir: Path) -> int:
    workdir = workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "input").mkdir(parents=True)

    digits = load_digits()
    train_set, valid_set = digits.data[:1400], digits.data[1400:]
    model = KMeans(n_clusters=10, n_init=10, random_state=0).fit(train_set)
    print(f"Trained k-means (10 clusters) on {len(train_set)} digits.")

    staging = workdir / "model"
    (staging / "code").mkdir(parents=True)
    joblib.dump(model, staging / "model.joblib")
    shutil.copy(HERE / "code" / "inference.py", staging / "code" / "inference.py")
    with tarfile.open(workdir / "model.tar.gz", "w:gz") as archive:
        for path in sorted(staging.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(staging)))
    shutil.rmtree(staging)

    numpy.savetxt(workdir / "input" / "valid-data.csv", valid_set, delimiter=",", fmt="%g")
    print(f"Wrote the validation set ({len(valid_set)} rows) to {workdir / 'input' / 'valid-data.csv'}.")

    # The request dict of the SageMaker guide's low-level example, with local locations.
    request = {
        "TransformJobName": "Batch-Transform-kmeans-demo",
        "ModelName": "kmeans-demo",
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "TransformOutput": {"S3OutputPath": (workdir / "output").as_uri()},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": (workdir / "input").as_uri()}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformResources": {"InstanceType": "ml.m4.xlarge", "InstanceCount": 1},
    }
    (workdir / "request.json").write_text(json.dumps(request, indent=2))
    command = [sys.executable, "-m", "conveyor", "transform", "--request", str(workdir / "request.json"), "--model", str(workdir / "model.tar.gz")]
    print("$ conveyor transform --request request.json --model model.tar.gz")
    status = subprocess.call(command)
    if status != 0:
        return status

    output = workdir / "output" / "valid-data.csv.out"
    results = output.read_text().splitlines()
    print(f"Sample transform result: {results[0]} (cluster of the first validation digit)")
    print(f"{len(results)} results; the .out files are in {output.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd() / "demo-output"))
