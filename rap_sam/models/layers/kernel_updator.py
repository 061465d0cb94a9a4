import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class KernelUpdator(nn.Module):
    """K-Net's gated kernel update: merges features pooled under each mask
    into the query that predicted the mask.

    Both gates are computed from the product of the query's and the pooled
    feature's "in" projections, so a query only takes in what agrees with it.
    Parameter names follow K-Net / RAP-SAM so released weights load.

    Args:
        in_channels (int): Channels of queries and pooled features.
        feat_channels (int): Channels inside the gates.
        out_channels (int, optional): Output channels; ``in_channels`` if
            None.
    """

    def __init__(self,
                 in_channels: int = 256,
                 feat_channels: int = 256,
                 out_channels: int = None):
        super().__init__()
        out_channels = out_channels or in_channels
        self.feat_channels = feat_channels
        self.dynamic_layer = nn.Linear(in_channels, 2 * feat_channels)
        self.input_layer = nn.Linear(in_channels, 2 * feat_channels)
        self.input_gate = nn.Linear(in_channels, feat_channels)
        self.update_gate = nn.Linear(in_channels, feat_channels)
        self.norm_in = nn.LayerNorm(feat_channels)
        self.norm_out = nn.LayerNorm(feat_channels)
        self.input_norm_in = nn.LayerNorm(feat_channels)
        self.input_norm_out = nn.LayerNorm(feat_channels)
        self.fc_layer = nn.Linear(feat_channels, out_channels)
        self.fc_norm = nn.LayerNorm(out_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, update_feature: Tensor, input_feature: Tensor) -> Tensor:
        """
        Args:
            update_feature (Tensor): Pooled features, [B, N, C].
            input_feature (Tensor): Queries, [B, N, C].

        Returns:
            Tensor: Updated queries, [B, N, out_channels].
        """
        c = self.feat_channels
        param_in, param_out = self.dynamic_layer(update_feature).split(c, -1)
        input_in, input_out = self.input_layer(input_feature).split(c, -1)

        gate_feats = input_in * param_in
        input_gate = self.input_norm_in(self.input_gate(gate_feats)).sigmoid()
        update_gate = self.norm_in(self.update_gate(gate_feats)).sigmoid()
        param_out = self.norm_out(param_out)
        input_out = self.input_norm_out(input_out)

        features = update_gate * param_out + input_gate * input_out
        return self.activation(self.fc_norm(self.fc_layer(features)))

    def forward_functional(self, update_feature: Tensor,
                           input_feature: Tensor) -> Tensor:
        """:meth:`forward`'s float operations, called as functions of the
        submodules' parameters rather than through the submodules (the
        same results, bit for bit, and no hooks): for a click, whose
        queries are one vector, each module call costs about what its
        product does."""
        c = self.feat_channels
        dyn, inp = self.dynamic_layer, self.input_layer
        param_in, param_out = F.linear(update_feature, dyn.weight,
                                       dyn.bias).split(c, -1)
        input_in, input_out = F.linear(input_feature, inp.weight,
                                       inp.bias).split(c, -1)

        gate_feats = input_in * param_in
        input_gate = _layer_norm(self.input_norm_in,
                                 _linear(self.input_gate,
                                         gate_feats)).sigmoid()
        update_gate = _layer_norm(self.norm_in,
                                  _linear(self.update_gate,
                                          gate_feats)).sigmoid()
        param_out = _layer_norm(self.norm_out, param_out)
        input_out = _layer_norm(self.input_norm_out, input_out)

        features = update_gate * param_out + input_gate * input_out
        return F.relu(
            _layer_norm(self.fc_norm, _linear(self.fc_layer, features)))


def _linear(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)`` without the module call."""
    return F.linear(x, layer.weight, layer.bias)


def _layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """``norm(x)`` without the module call."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias,
                        norm.eps)
