"""The shortcut behind channel importance's exact drops: a convolution of "one channel zeroed
per row" from the unedited map, checked against the convolution of the zeroed batch itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layerscope.zeroed import ZeroedConvs


@pytest.mark.parametrize(
    "stride, padding, dilation, bias",
    [(1, 1, 1, True), (1, 12, 12, False), (2, 0, 1, True), (1, 36, 36, True)],
)
def test_the_zeroed_rows_convolution_equals_the_direct_one(stride, padding, dilation, bias):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 16, 21, 19, generator=g)
    weight = torch.randn(8, 16, 3, 3, generator=g)
    b = torch.randn(8, generator=g) if bias else None
    channels = [3, 0, 15, 3]  # a channel twice: two rows, the same edit
    edited = base.expand(4, -1, -1, -1).clone()
    edited[torch.arange(4), channels] = 0
    direct = F.conv2d(edited, weight, b, stride, padding, dilation)  # independent truth
    mode = ZeroedConvs(channels)
    mode.arm(edited, base)
    with mode:
        ours = F.conv2d(edited, weight, b, stride, padding, dilation)
        other = F.conv2d(base, weight, b, stride, padding, dilation)  # not the batch: as it is
    assert mode.calls == 1
    torch.testing.assert_close(ours, direct, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(other, F.conv2d(base, weight, b, stride, padding, dilation))


def test_a_batch_written_to_since_is_convolved_as_it_is():
    base = torch.randn(1, 4, 8, 8)
    weight = torch.randn(2, 4, 3, 3)
    edited = base.expand(2, -1, -1, -1).clone()
    edited[torch.arange(2), [1, 2]] = 0
    mode = ZeroedConvs([1, 2])
    mode.arm(edited, base)
    edited.relu_()  # the values are no longer "base with a channel zeroed"
    with mode:
        ours = F.conv2d(edited, weight, padding=1)
        grouped = F.conv2d(edited, weight.repeat(1, 2, 1, 1)[:, :2], padding=1, groups=2)
    assert mode.calls == 0
    torch.testing.assert_close(ours, F.conv2d(edited, weight, padding=1))
    torch.testing.assert_close(
        grouped, F.conv2d(edited, weight.repeat(1, 2, 1, 1)[:, :2], padding=1, groups=2)
    )


def test_chunks_of_one_map_share_its_convolution():
    g = torch.Generator().manual_seed(2)
    base, weight = torch.randn(1, 6, 9, 9, generator=g), torch.randn(3, 6, 3, 3, generator=g)
    full: dict = {}
    for chunk in ([0, 1], [5, 2]):
        edited = base.expand(2, -1, -1, -1).clone()
        edited[torch.arange(2), chunk] = 0
        mode = ZeroedConvs(chunk, full)
        mode.arm(edited, base)
        with mode:
            ours = F.conv2d(edited, weight, padding=2, dilation=2)
        torch.testing.assert_close(ours, F.conv2d(edited, weight, padding=2, dilation=2))
    assert len(full) == 1  # conv(base) made once for both chunks
