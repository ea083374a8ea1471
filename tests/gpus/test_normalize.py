import pytest

from gpus.normalize import normalize_gpu_model


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", "A10"),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA L40S", "L40S"),
        ("GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4090 D", "RTX 4090 D"),
        ("geforce rtx4090", "RTX 4090"),
        ("GeForce RTX-3090-Ti", "RTX 3090 TI"),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", "RTX 4070 TI"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 ADA"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Instinct MI250X", "MI250X"),
    ],
)
def test_known_gpu_descriptions_become_the_marketplace_model_name(text, expected):
    assert normalize_gpu_model(text) == expected


def test_longer_names_win_over_their_prefixes():
    assert normalize_gpu_model("H100 NVL") == "H100 NVL"
    assert normalize_gpu_model("RTX 4090 D") == "RTX 4090 D"
    assert normalize_gpu_model("A10G") == "A10G"


def test_a_model_name_inside_a_longer_number_does_not_match():
    assert normalize_gpu_model("Acme H1000 accelerator") == "ACME H1000 ACCELERATOR"
    assert normalize_gpu_model("XA100") == "XA100"


def test_unknown_gpu_keeps_its_description_without_vendor_noise():
    assert normalize_gpu_model("NVIDIA Quadro P2200 5GB") == "P2200"
    assert normalize_gpu_model("  Intel   Arc  A770 ") == "INTEL ARC A770"


def test_unknown_gpu_description_is_cut_to_the_field_length():
    result = normalize_gpu_model("X" * 300)

    assert result == "X" * 64


def test_empty_description_gives_an_empty_model():
    assert normalize_gpu_model("") == ""


def test_normalising_is_idempotent():
    for text in ("NVIDIA H100 80GB HBM3", "GeForce RTX 4090", "NVIDIA Quadro P2200 5GB"):
        once = normalize_gpu_model(text)
        assert normalize_gpu_model(once) == once
