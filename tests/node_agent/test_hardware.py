"""Hardware detection: nvidia-smi's CSV in its variants, and machines without it."""

import subprocess

import pytest
from gpu_node import hardware
from gpu_node.hardware import GpuInfo, parse_nvidia_smi_csv

H100_CSV = (
    "0, NVIDIA H100 80GB HBM3, 81559, 20480, 37, 61, 550.54.15\n"
    "1, NVIDIA H100 80GB HBM3, 81559, 1024, 41, 58, 550.54.15\n"
)


def test_nvidia_smi_rows_become_gpus():
    gpus = parse_nvidia_smi_csv(H100_CSV)

    assert gpus == [
        GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, 20480, 37, 61, "550.54.15"),
        GpuInfo(1, "NVIDIA H100 80GB HBM3", 81559, 1024, 41, 58, "550.54.15"),
    ]


def test_values_nvidia_smi_cannot_read_are_none():
    text = "0, NVIDIA A100-SXM4-40GB MIG 3g.20gb, 40960, [N/A], [Not Supported], [N/A], 535.104.05\n"

    (gpu,) = parse_nvidia_smi_csv(text)

    assert (gpu.memory_total_mb, gpu.memory_used_mb, gpu.utilization, gpu.temperature_c) == (40960, None, None, None)


def test_output_with_units_is_read_too():
    (gpu,) = parse_nvidia_smi_csv("0, Tesla T4, 15360 MiB, 0 MiB, 0 %, 34, 470.82.01\n")

    assert (gpu.memory_total_mb, gpu.memory_used_mb, gpu.utilization) == (15360, 0, 0)


def test_blank_and_malformed_lines_are_skipped():
    text = "\n0, NVIDIA L4, 23034, 0, 0, 40, 550.54.15\r\n   \nNo devices were found\n"

    assert [g.name for g in parse_nvidia_smi_csv(text)] == ["NVIDIA L4"]


def test_no_nvidia_smi_on_path_means_no_gpus():
    def run(*args, **kwargs):
        raise AssertionError("must not run anything")

    assert hardware.query_gpus(which=lambda name: None, run=run) == []


def test_a_failing_nvidia_smi_means_no_gpus():
    def run(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 9, "NVIDIA-SMI has failed because it couldn't communicate", "")

    assert hardware.query_gpus(which=lambda name: "/usr/bin/nvidia-smi", run=run) == []


def test_nvidia_smi_is_asked_for_the_fields_the_parser_reads():
    seen = []

    def run(argv, **kwargs):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, H100_CSV, "")

    gpus = hardware.query_gpus(which=lambda name: "/usr/bin/nvidia-smi", run=run)

    assert len(gpus) == 2
    assert seen == [
        [
            "/usr/bin/nvidia-smi",
            "--query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,driver_version",
            "--format=csv,noheader,nounits",
        ]
    ]


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ([GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, driver_version="550.54.15")] * 2,
         "NVIDIA H100 80GB HBM3 (81559 MiB, driver 550.54.15)"),
        ([GpuInfo(0, "NVIDIA L4", 23034), GpuInfo(1, "Tesla T4", 15360)], "1 x NVIDIA L4 + 1 x Tesla T4"),
        ([], "none"),
    ],
)  # fmt: skip
def test_gpu_info_names_the_models_memory_and_driver(gpus, expected):
    assert hardware.describe_gpus(gpus) == expected


def test_the_gpu_record_has_every_field_the_server_takes():
    gpus = parse_nvidia_smi_csv(H100_CSV)

    record = hardware.gpu_record(gpus, region="eu-west", price_per_hour=None)

    assert set(record) == {
        "gpu_info", "cpu_name", "cpu_core", "cpu_frequency", "total_memory", "total_swap", "ram",
        "os_name", "os_version", "gpu_count", "gpu_memory_gb", "region",
    }  # fmt: skip
    assert (record["gpu_count"], record["gpu_memory_gb"]) == (2, 80)


def test_metrics_sum_memory_average_utilisation_and_take_the_hottest_gpu():
    metrics = hardware.metrics(parse_nvidia_smi_csv(H100_CSV))

    assert metrics["gpu_utilization"] == 39
    assert (metrics["gpu_memory_used_mb"], metrics["gpu_memory_total_mb"]) == (21504, 163118)
    assert metrics["gpu_temperature_c"] == 61
    assert metrics["gpus"][1] == {
        "index": 1, "name": "NVIDIA H100 80GB HBM3", "utilization": 41, "memory_used_mb": 1024,
        "memory_total_mb": 81559, "temperature_c": 58,
    }  # fmt: skip


def test_metrics_leave_out_figures_nvidia_smi_did_not_give():
    metrics = hardware.metrics([GpuInfo(0, "MIG", 40960)])

    assert "gpu_utilization" not in metrics and "gpu_temperature_c" not in metrics
    assert metrics["gpus"] == [{"index": 0, "name": "MIG", "memory_total_mb": 40960}]


def test_metrics_without_gpus_have_cpu_and_ram_only():
    assert set(hardware.metrics([])) == {"cpu_percent", "ram_used_mb", "ram_total_mb"}
