"""Models: create, get, delete, and ListModels' filters, sorts and keyset pages."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from conveyor.store import AlreadyExists, InvalidToken, Store

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "conveyor.db") as store:
        yield store


def arn(name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:000000000000:model/{name}"


def add(store: Store, name: str, seconds: float = 0) -> None:
    store.models.create(name, arn(name), {"ModelName": name}, T0 + timedelta(seconds=seconds))


def names(page) -> list[str]:
    return [summary.name for summary in page.items]


def test_a_model_is_kept_as_created(store):
    request = {"ModelName": "m", "PrimaryContainer": {"Image": "conveyor:python", "Environment": {"A": "1"}}}
    created = store.models.create("m", arn("m"), request, T0, tags={"team": "ml"})
    got = store.models.get("m")
    assert got == created
    assert got.request == request and got.creation_time == T0 and got.creation_time.tzinfo is timezone.utc
    assert store.tags.list(arn("m")) == {"team": "ml"}


def test_a_duplicate_model_is_refused_with_its_arn(store):
    add(store, "m")
    with pytest.raises(AlreadyExists) as caught:
        store.models.create("m", arn("m"), {}, T0, tags={"other": "x"})
    assert caught.value.arn == arn("m") and caught.value.kind == "model"
    assert store.tags.list(arn("m")) == {}  # the refused create wrote nothing


def test_names_are_case_sensitive(store):
    add(store, "Model")
    add(store, "model")
    assert store.models.get("MODEL") is None
    assert store.models.get("Model").name == "Model"


def test_delete_removes_the_model_and_its_tags(store):
    store.models.create("m", arn("m"), {}, T0, tags={"a": "b"})
    assert store.models.delete("m") is True
    assert store.models.get("m") is None
    assert store.tags.list(arn("m")) == {}
    assert store.models.delete("m") is False
    add(store, "m")  # the name is free again
    assert store.models.get("m") is not None


def test_list_defaults_to_newest_first_in_pages_of_ten(store):
    for index in range(12):
        add(store, f"model-{index:02}", index)
    page = store.models.list()
    assert names(page) == [f"model-{index:02}" for index in range(11, 1, -1)]
    rest = store.models.list(next_token=page.next_token)
    assert names(rest) == ["model-01", "model-00"] and rest.next_token is None


def test_list_sorts_by_name_either_way(store):
    for index, name in enumerate(["b", "a", "C", "c"]):
        add(store, name, index)
    assert names(store.models.list(sort_by="Name", sort_order="Ascending")) == ["C", "a", "b", "c"]
    assert names(store.models.list(sort_by="Name", sort_order="Descending")) == ["c", "b", "a", "C"]


def test_list_filters_by_name_ignoring_case_and_by_exclusive_times(store):
    for index, name in enumerate(["alpha-XGB", "beta", "xgb-gamma", "delta"]):
        add(store, name, index * 10)
    assert set(names(store.models.list(name_contains="xgb"))) == {"alpha-XGB", "xgb-gamma"}
    window = store.models.list(creation_time_after=T0, creation_time_before=T0 + timedelta(seconds=30))
    assert names(window) == ["xgb-gamma", "beta"]  # both bounds exclusive
    assert names(store.models.list(name_contains="%")) == []  # LIKE wildcards are literal


def test_ties_in_creation_time_page_by_name(store):
    for name in ["c", "a", "b", "d"]:
        add(store, name)
    seen = []
    token = None
    while True:
        page = store.models.list(sort_order="Ascending", max_results=1, next_token=token)
        seen += names(page)
        token = page.next_token
        if token is None:
            break
    assert seen == ["a", "b", "c", "d"]


def test_a_token_from_another_sort_or_not_ours_is_refused(store):
    for index in range(3):
        add(store, f"m{index}", index)
    token = store.models.list(max_results=1).next_token
    with pytest.raises(InvalidToken):
        store.models.list(sort_by="Name", next_token=token)
    with pytest.raises(InvalidToken):
        store.models.list(next_token="not a token")
    with pytest.raises(InvalidToken):
        store.jobs.list(next_token=token)


@pytest.mark.parametrize(
    "arguments", [{"max_results": 0}, {"max_results": 101}, {"sort_by": "Status"}, {"sort_order": "Up"}]
)
def test_list_arguments_outside_the_api_are_programming_errors(store, arguments):
    with pytest.raises(ValueError):
        store.models.list(**arguments)
