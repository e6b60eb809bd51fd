"""Instance-type profiles, the profiles file's rules, the machine's GPU list and each instance's devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.engine.backend import JobStartFailed
from conveyor.engine.gpus import assign_gpus, plan_gpus
from conveyor.runtimes.docker_server import DockerServerRuntime
from conveyor.runtimes.registry import RuntimeOptions, RuntimeTarget
from conveyor.sagemaker import shapes
from conveyor.sagemaker.instance_types import BUILT_IN, InstanceType, ProfileError, instance_types, load_profiles
from conveyor.sagemaker.model import parse_model
from conveyor.settings import Settings, SettingsError, parse_gpus

# -- the built-in profiles -----------------------------------------------------------------------


def test_every_transform_instance_type_of_botocore_has_a_profile() -> None:
    assert set(BUILT_IN) == {*shapes.enum_values("TransformInstanceType"), "local", "local_gpu"}


@pytest.mark.parametrize(
    ("name", "vcpus", "memory_gib", "gpus", "gpu_kind"),
    [
        ("ml.m5.xlarge", 4, 16, 0, None),
        ("ml.c4.xlarge", 4, 7.5, 0, None),
        ("ml.g4dn.xlarge", 4, 16, 1, "T4"),
        ("ml.g5.xlarge", 4, 16, 1, "A10G"),
        ("ml.g5.12xlarge", 48, 192, 4, "A10G"),
        ("ml.p3.2xlarge", 8, 61, 1, "V100"),
        ("ml.p3.8xlarge", 32, 244, 4, "V100"),
        ("ml.g6e.48xlarge", 192, 1536, 8, "L40S"),
        ("ml.inf2.xlarge", 4, 16, 0, None),  # Inferentia is no GPU
        ("local", None, None, 0, None),
        ("local_gpu", None, None, 1, None),
    ],
)
def test_built_in_figures(name: str, vcpus: int | None, memory_gib: float | None, gpus: int, gpu_kind: str | None) -> None:
    assert BUILT_IN[name] == InstanceType(name, vcpus, memory_gib, gpus, gpu_kind)


# -- the profiles file ---------------------------------------------------------------------------


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "types.json"
    path.write_text(json.dumps(document))
    return path


def test_a_file_overrides_fields_and_adds_types(tmp_path: Path) -> None:
    path = write(tmp_path, {"ml.g5.xlarge": {"gpus": 2}, "ml.g7.xlarge": {"vcpus": 4, "memory_gib": 16, "gpus": 1, "gpu_kind": "B200"}})
    profiles = load_profiles(path)
    assert profiles["ml.g5.xlarge"] == InstanceType("ml.g5.xlarge", 4, 16, 2, "A10G")
    assert profiles["ml.g7.xlarge"] == InstanceType("ml.g7.xlarge", 4, 16, 1, "B200")
    assert profiles["ml.m5.xlarge"] == BUILT_IN["ml.m5.xlarge"]
    assert instance_types(None) == BUILT_IN and instance_types(path) == profiles


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"ml.g5.xlarge": {"gpus": -1}}, "instance type 'ml.g5.xlarge': gpus -1 must be an integer of at least 0"),
        ({"ml.g5.xlarge": {"gpus": 1.5}}, "instance type 'ml.g5.xlarge': gpus 1.5 must be an integer of at least 0"),
        ({"ml.g5.xlarge": {"gpus": True}}, "instance type 'ml.g5.xlarge': gpus true must be an integer of at least 0"),
        ({"ml.m5.xlarge": {"vcpus": 0}}, "instance type 'ml.m5.xlarge': vcpus 0 must be an integer of at least 1, or null for this machine's"),
        ({"ml.m5.xlarge": {"memory_gib": "16"}}, "instance type 'ml.m5.xlarge': memory_gib \"16\" must be a number of GiB above 0"),
        ({"ml.m5.xlarge": {"gpu_kind": ""}}, "instance type 'ml.m5.xlarge': gpu_kind \"\" must be a non-empty string, or null"),
        ({"ml.m5.xlarge": {"gpu": 1}}, "instance type 'ml.m5.xlarge': unknown field 'gpu'; the fields are vcpus, memory_gib, gpus and gpu_kind"),
        ({"ml.m5.xlarge": 4}, "instance type 'ml.m5.xlarge': 4 must be an object with vcpus, memory_gib, gpus and gpu_kind"),
        ({"ml.g7.xlarge": {"vcpus": 4, "gpus": 1}}, "instance type 'ml.g7.xlarge': memory_gib is missing; a type that is not built in must give"),
        (["ml.g5.xlarge"], "must be a JSON object mapping instance types to their profiles, not list"),
    ],
)
def test_file_errors_name_the_file_type_field_value_and_rule(tmp_path: Path, document: object, message: str) -> None:
    path = write(tmp_path, document)
    with pytest.raises(ProfileError) as caught:
        load_profiles(path)
    assert str(caught.value).startswith(f"instance types file {path}: ")
    assert message in str(caught.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"missing\.json: cannot be read: No such file or directory"):
        load_profiles(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{ml.g5.xlarge: 1}")
    with pytest.raises(ProfileError, match=r"bad\.json: is not JSON: Expecting property name"):
        load_profiles(tmp_path / "bad.json")


# -- the machine's GPUs (settings) ---------------------------------------------------------------


def test_gpu_settings_from_flags_and_environment(tmp_path: Path) -> None:
    home = {"CONVEYOR_HOME": str(tmp_path)}
    assert Settings.from_environ({**home, "CONVEYOR_GPUS": "0, 1"}).machine_gpus() == ("0", "1")
    assert Settings.from_environ({**home, "CONVEYOR_GPUS": "none", "CUDA_VISIBLE_DEVICES": "0"}).machine_gpus() == ()
    assert Settings.from_environ({**home, "CUDA_VISIBLE_DEVICES": "2,GPU-5f1c,-1,3"}).machine_gpus() == ("2", "GPU-5f1c")
    assert Settings.from_environ({**home, "CUDA_VISIBLE_DEVICES": ""}).machine_gpus() == ()
    assert Settings.from_environ(home).gpus is None  # detected with nvidia-smi when a job asks
    settings = Settings.from_environ({**home, "CONVEYOR_INSTANCE_TYPES": "~/types.json", "CONVEYOR_REQUIRE_GPUS": "1"})
    assert settings.instance_types_file == Path.home() / "types.json" and settings.require_gpus
    assert not Settings.from_environ(home).require_gpus and Settings.from_environ(home).instance_types_file is None


@pytest.mark.parametrize(
    ("value", "message"),
    [("0,,1", "an empty device"), ("1,0,1", "device '1' is listed twice"), ("", "an empty device")],
)
def test_bad_gpu_lists_are_refused(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        parse_gpus(value)
    assert str(caught.value).startswith(f"--gpus (CONVEYOR_GPUS) {value!r}: ")


# -- assigning devices -------------------------------------------------------------------------


def test_two_instances_of_one_gpu_on_two_devices() -> None:
    assert assign_gpus(1, 2, ["0", "1"]) == (("0",), ("1",))


def test_four_gpu_type_on_eight_devices() -> None:
    devices = [str(n) for n in range(8)]
    assert assign_gpus(BUILT_IN["ml.g5.12xlarge"].gpus, 2, devices) == (("0", "1", "2", "3"), ("4", "5", "6", "7"))


def test_fewer_devices_than_needed() -> None:
    assert assign_gpus(1, 3, ["0", "1"]) == (("0",), ("1",), ())
    assert assign_gpus(4, 2, ["0", "1", "2"]) == (("0", "1", "2"), ())


def test_cpu_type_gets_no_device() -> None:
    assert assign_gpus(BUILT_IN["ml.m5.xlarge"].gpus, 2, ["0", "1"]) == ((), ())


def test_plan_logs_the_shortage_in_one_line(tmp_path: Path) -> None:
    lines: list[str] = []
    assignment = plan_gpus("ml.g5.xlarge", 2, Settings(home=tmp_path, gpus=("7",)), lines.append)
    assert assignment == (("7",), ())
    assert lines == [
        "InstanceType ml.g5.xlarge has 1 A10G GPU per instance (2 for 2 instances), but this machine has 1 GPU (7): "
        "instance 1 runs on GPU 7; instance 2 runs on CPU."
    ]
    lines.clear()
    assert plan_gpus("ml.g5.xlarge", 2, Settings(home=tmp_path, gpus=("0", "1")), lines.append) == (("0",), ("1",))
    assert plan_gpus("ml.m5.xlarge", 1, Settings(home=tmp_path, gpus=()), lines.append) == ((),)
    assert lines == []


def test_plan_fails_when_gpus_are_required(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, gpus=("0", "1"), require_gpus=True)
    assert plan_gpus("ml.g5.xlarge", 2, settings, print) == (("0",), ("1",))
    with pytest.raises(JobStartFailed) as caught:
        plan_gpus("ml.p3.8xlarge", 1, settings, print)
    assert str(caught.value) == (
        "InstanceType ml.p3.8xlarge has 4 V100 GPUs per instance, but this machine has 2 GPUs (0,1), "
        "and --require-gpus (CONVEYOR_REQUIRE_GPUS) is set."
    )


def test_plan_of_a_type_without_a_profile_and_of_a_broken_file(tmp_path: Path) -> None:
    lines: list[str] = []
    assert plan_gpus("ml.g9.xlarge", 1, Settings(home=tmp_path, gpus=("0",)), lines.append) == ((),)
    assert lines == ["InstanceType ml.g9.xlarge has no profile (built in or in --instance-types FILE); its instances run without GPUs."]
    settings = Settings(home=tmp_path, gpus=(), instance_types_file=write(tmp_path, {"ml.g5.xlarge": {"gpus": "one"}}))
    with pytest.raises(JobStartFailed, match="gpus \"one\" must be an integer of at least 0"):
        plan_gpus("ml.g5.xlarge", 1, settings, print)


# -- how runtimes apply an instance's devices --------------------------------------------------


def target(gpus: tuple[str, ...] | None) -> RuntimeTarget:
    model = parse_model({"ModelName": "m", "PrimaryContainer": {"Image": "my/image:1", "Environment": {"CUDA_VISIBLE_DEVICES": "9"}}})
    return RuntimeTarget.for_model(model, [], model.containers[0].environment, RuntimeOptions(instance_type="ml.g5.xlarge", gpus=gpus))


def test_processes_on_this_machine_see_their_devices_only() -> None:
    assert target(("0", "1")).process_environment["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert target(()).process_environment["CUDA_VISIBLE_DEVICES"] == ""
    assert target(None).process_environment["CUDA_VISIBLE_DEVICES"] == "9"  # not assigned: as the model set it


def test_docker_gets_its_devices(tmp_path: Path) -> None:
    def gpus_flag(gpus: tuple[str, ...]) -> list[str]:
        arguments = DockerServerRuntime("my/image:1", model_dir=None, environment={}, instance_type="ml.g5.12xlarge", gpus=gpus).create_arguments("c")
        return arguments[arguments.index("--gpus"):][:2] if "--gpus" in arguments else []

    assert gpus_flag(("2", "3")) == ["--gpus", '"device=2,3"']
    assert gpus_flag(()) == []
