"""The device label stored in every row and its parser: one home (bench.env), read back by bench check."""
from __future__ import annotations

import torch

from bench.env import CpuSetting, device_label, parse_device_label


def test_the_cpu_label_round_trips_through_its_parser():
    label = device_label(torch.device("cpu"))
    assert parse_device_label(label) == CpuSetting(torch.get_num_threads(), torch.backends.cpu.get_cpu_capability())


def test_parser_reads_older_labels_and_refuses_the_rest():
    assert parse_device_label("cpu (2 threads, AVX512)") == CpuSetting(2, "AVX512")
    assert parse_device_label("cpu (1 threads)") == CpuSetting(1, "")
    assert parse_device_label("cuda:0 (NVIDIA H100)") is None
    assert parse_device_label("") is None
