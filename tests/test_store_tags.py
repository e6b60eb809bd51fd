"""Tags per resource ARN: add (overwriting a key), list, delete by keys."""

from __future__ import annotations

import pytest

from conveyor.store import Store

JOB = "arn:aws:sagemaker:us-east-1:000000000000:transform-job/job"
MODEL = "arn:aws:sagemaker:us-east-1:000000000000:model/model"


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        yield store


def test_adding_overwrites_a_key_and_keeps_the_others(store):
    store.tags.add(JOB, {"team": "ml", "env": "dev"})
    store.tags.add(JOB, {"env": "prod", "cost": "42"})
    assert store.tags.list(JOB) == {"cost": "42", "env": "prod", "team": "ml"}
    assert list(store.tags.list(JOB)) == ["cost", "env", "team"]


def test_tags_belong_to_one_resource(store):
    store.tags.add(JOB, {"team": "ml"})
    store.tags.add(MODEL, {"team": "platform"})
    assert store.tags.list(MODEL) == {"team": "platform"}
    assert store.tags.list("arn:unknown") == {}


def test_deleting_named_keys_ignores_absent_ones(store):
    store.tags.add(JOB, {"a": "1", "b": "2", "c": "3"})
    store.tags.delete(JOB, ["a", "c", "missing"])
    assert store.tags.list(JOB) == {"b": "2"}


def test_empty_values_are_kept(store):
    store.tags.add(MODEL, {"flag": ""})
    assert store.tags.list(MODEL) == {"flag": ""}
