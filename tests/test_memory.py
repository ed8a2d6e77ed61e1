import pytest

from astrobio_lib import memory


def test_state_byte_rules():
    # mixed-precision AdamW: 16 bytes/parameter (ZeRO paper total)
    assert sum(memory.state_bytes_per_param("bf16-mixed", "adamw").values()) == 16.0
    assert sum(memory.state_bytes_per_param("fp32", "adamw").values()) == 16.0
    # bitsandbytes 8-bit: 2 uint8 moments + fp32 absmax per 256-element block per moment
    assert memory.optimizer_state_bytes_per_param("adamw8bit") == pytest.approx(2.03125)
    assert memory.optimizer_state_bytes_per_param("adamw8bit", numel=4095) == 8.0
    assert sum(memory.state_bytes_per_param("bf16", "adamw8bit").values()) == pytest.approx(6.03125)
    with pytest.raises(ValueError, match="precision='fp8'"):
        memory.state_bytes_per_param("fp8", "adamw")


def test_a5000_peak_from_its_data_sheet():
    a5000 = memory.DEVICES["RTX A5000"]
    assert a5000.peak_flops_bf16 == pytest.approx(256 * 128 * 2 * 1.695e9, rel=0.01)
