# The inference server: a Flask app answering SageMaker's /ping, /execution-parameters and
# /invocations. The model is a decision tree for the iris data set, stored as JSON in the model
# directory (decision-tree-model.json); a request is CSV, one flower's four measurements per
# line, and the answer is CSV, one species per line.

import csv
import io
import json
import multiprocessing
import os

import flask

prefix = "/opt/ml/"
model_path = os.environ.get("SM_MODEL_DIR") or os.path.join(prefix, "model")


class ScoringService:
    model = None  # where we keep the model when it's loaded

    @classmethod
    def get_model(cls):
        """Get the model object for this instance, loading it if it's not already loaded."""
        if cls.model is None:
            with open(os.path.join(model_path, "decision-tree-model.json")) as inp:
                cls.model = json.load(inp)
        return cls.model

    @classmethod
    def predict(cls, rows):
        """One prediction per row: walk the tree from its root to a leaf."""
        model = cls.get_model()
        predictions = []
        for row in rows:
            node = model
            while isinstance(node, dict):
                node = node["left"] if row[node["feature"]] <= node["threshold"] else node["right"]
            predictions.append(node)
        return predictions


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    """Healthy if the model loads."""
    try:
        health = ScoringService.get_model() is not None
    except (OSError, ValueError) as exc:
        print(f"The model cannot be loaded from {model_path}: {exc}", flush=True)
        health = False
    return flask.Response(response="\n", status=200 if health else 404, mimetype="application/json")


@app.route("/execution-parameters", methods=["GET"])
def execution_parameters():
    """As many requests at once as there are workers, as the Developer Guide advises."""
    workers = int(os.environ.get("MODEL_SERVER_WORKERS") or multiprocessing.cpu_count())
    body = {"MaxConcurrentTransforms": workers, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
    return flask.Response(response=json.dumps(body), status=200, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def transformation():
    """Score a batch of CSV lines; answer CSV, one species per line."""
    if flask.request.mimetype != "text/csv":
        return flask.Response(response="This predictor only supports CSV data", status=415, mimetype="text/plain")
    text = flask.request.data.decode("utf-8")
    rows = []
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields:
            continue
        try:
            rows.append([float(field) for field in fields])
        except ValueError:
            message = f"Could not parse record {number}: {','.join(fields)!r} is not four numbers"
            return flask.Response(response=message, status=400, mimetype="text/plain")

    print(f"Invoked with {len(rows)} records", flush=True)
    predictions = ScoringService.predict(rows)

    out = io.StringIO()
    for prediction in predictions:
        out.write(f"{prediction}\n")
    return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")
