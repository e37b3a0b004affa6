"""Weight initialisations a search or retrain can ask for by name (`WeightConfig.init`)."""

from __future__ import annotations

import math

from torch import nn


def he_fout_(net: nn.Module) -> nn.Module:
    """The official ProxylessNAS initialisation ('he_fout'), in place, from torch's RNG.

    Convolutions N(0, 2 / (k_h · k_w · C_out)) (He, fan-out, not divided by groups: the official
    search's default), batch norm γ 1 and β 0, linear layers U(±1/√fan_in) with zero bias.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.size(1))
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net
