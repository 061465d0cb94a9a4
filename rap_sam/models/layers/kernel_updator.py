import torch.nn as nn
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

    #: It takes sums over thousands of pixels: under fp16 autocast it runs
    #: in fp32 (:func:`~rap_sam.models.layers.decoder_stage.
    #: update_with_pooled`), its weights kept fp32.
    fp32_under_fp16 = True

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
