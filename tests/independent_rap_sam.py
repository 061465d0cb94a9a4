"""RAP-SAM's forward written out from the description in RAP_SAM.md, as
plain functions over a state dict.

It shares no code with ``rap_sam`` (nor with mmcv's deformable conv, which
is redone here with ``grid_sample``), so agreement between the two is an
independent check of the model, the neck's offset layout included.
"""
import math

import torch
import torch.nn.functional as F


def bn(x, sd, p, eps=1e-5):
    return F.batch_norm(x, sd[p + '.running_mean'], sd[p + '.running_var'],
                        sd[p + '.weight'], sd[p + '.bias'], False, 0., eps)


def linear(x, sd, p, bias=True):
    return F.linear(x, sd[p + '.weight'], sd[p + '.bias'] if bias else None)


def layer_norm(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + '.weight'], sd[p + '.bias'])


# ----------------------------------------------------------------------------
# ResNet-50 (torchvision layout: the stride sits on the 3x3 conv)
# ----------------------------------------------------------------------------
def resnet50(x, sd):
    x = F.relu(
        bn(
            F.conv2d(x, sd['backbone.conv1.weight'], stride=2, padding=3), sd,
            'backbone.bn1'))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for layer, blocks in enumerate([3, 4, 6, 3], start=1):
        for b in range(blocks):
            p = f'backbone.layer{layer}.{b}'
            stride = 2 if (b == 0 and layer > 1) else 1
            y = F.relu(
                bn(F.conv2d(x, sd[p + '.conv1.weight']), sd, p + '.bn1'))
            y = F.relu(
                bn(
                    F.conv2d(
                        y, sd[p + '.conv2.weight'], stride=stride, padding=1),
                    sd, p + '.bn2'))
            y = bn(F.conv2d(y, sd[p + '.conv3.weight']), sd, p + '.bn3')
            if b == 0:
                x = bn(
                    F.conv2d(x, sd[p + '.downsample.0.weight'], stride=stride),
                    sd, p + '.downsample.1')
            x = F.relu(x + y)
        outs.append(x)
    return outs


# ----------------------------------------------------------------------------
# Lite deformable neck
# ----------------------------------------------------------------------------
def modulated_deform_conv3x3(x, offset, mask, weight):
    """DCNv2, 3x3, stride 1, pad 1: kernel point k samples the input at
    (y + i - 1 + dy_k, x + j - 1 + dx_k) bilinearly (zero outside), scaled by
    mask_k; offsets come as (dy_0, dx_0, dy_1, dx_1, ...)."""
    n, c, h, w = x.shape
    ys = torch.arange(h, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, dtype=x.dtype).view(1, 1, w)
    cols = []
    for k in range(9):
        i, j = divmod(k, 3)
        py = ys + (i - 1) + offset[:, 2 * k]
        px = xs + (j - 1) + offset[:, 2 * k + 1]
        grid = torch.stack([2 * px / (w - 1) - 1, 2 * py / (h - 1) - 1], -1)
        sampled = F.grid_sample(
            x, grid, mode='bilinear', padding_mode='zeros', align_corners=True)
        cols.append(sampled * mask[:, k:k + 1])
    cols = torch.stack(cols, 2)  # n, c, 9, h, w
    return torch.einsum('nckhw,ock->nohw', cols, weight.flatten(2))


def deform_up(x, sd, p):
    om = F.conv2d(
        x, sd[p + '.dcn_offset.weight'], sd[p + '.dcn_offset.bias'], padding=1)
    offset, mask = om[:, :18], om[:, 18:].sigmoid()
    x = modulated_deform_conv3x3(x, offset, mask, sd[p + '.dcn.weight'])
    x = F.relu(bn(x, sd, p + '.dcn_bn'))
    x = F.conv_transpose2d(x, sd[p + '.up_sample.weight'], stride=2, padding=1)
    return F.relu(bn(x, sd, p + '.up_bn'))


def neck(feats, sd):
    d = 'neck.deconv.'

    def conv(x, name, **kw):
        return F.conv2d(x, sd[d + name + '.weight'],
                        sd.get(d + name + '.bias'), **kw)

    x5 = conv(feats[3], 'lateral_conv0')
    x4 = conv(feats[2], 'lateral_conv1') + deform_up(x5, sd,
                                                     d + 'deform_conv1')
    x3 = conv(feats[1], 'lateral_conv2') + deform_up(x4, sd,
                                                     d + 'deform_conv2')
    x2 = conv(feats[0], 'lateral_conv3') + deform_up(x3, sd,
                                                     d + 'deform_conv3')
    agg = sd[d + 'bias'] + conv(x2, 'conv_a2')
    for x, name, s in ((x5, 'conv_a5', 8), (x4, 'conv_a4', 4), (x3, 'conv_a3',
                                                                2)):
        agg = agg + F.interpolate(
            conv(x, name),
            scale_factor=s,
            mode='bilinear',
            align_corners=False)
    agg = conv(agg, 'output_conv', padding=1)
    n, _, h, w = agg.shape
    gy, gx = torch.meshgrid(
        torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing='ij')
    coords = torch.stack([gx, gy])[None].expand(n, -1, -1, -1)
    return F.conv2d(
        torch.cat([agg, coords], 1), sd['neck.loc_conv.weight'],
        sd['neck.loc_conv.bias'])


# ----------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------
def kernel_update(pooled, q, sd, p):
    pin, pout = linear(pooled, sd, p + '.dynamic_layer').chunk(2, -1)
    iin, iout = linear(q, sd, p + '.input_layer').chunk(2, -1)
    gate = iin * pin
    g_in = layer_norm(
        linear(gate, sd, p + '.input_gate'), sd,
        p + '.input_norm_in').sigmoid()
    g_up = layer_norm(
        linear(gate, sd, p + '.update_gate'), sd, p + '.norm_in').sigmoid()
    out = g_up * layer_norm(pout, sd, p + '.norm_out') + g_in * layer_norm(
        iout, sd, p + '.input_norm_out')
    return F.relu(
        layer_norm(linear(out, sd, p + '.fc_layer'), sd, p + '.fc_norm'))


def attention(q, k, v, in_w, in_b, out_w, out_b, heads, blocked=None):
    """Multi-head attention, batch first, written out."""
    c = q.shape[-1]
    wq, wk, wv = in_w.split(c)
    bq, bk, bv = in_b.split(c)
    q, k, v = F.linear(q, wq, bq), F.linear(k, wk, bk), F.linear(v, wv, bv)

    def split(t):
        return t.unflatten(-1, (heads, c // heads)).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    logits = q @ k.transpose(-1, -2) / math.sqrt(c // heads)
    if blocked is not None:
        logits = logits.masked_fill(blocked, float('-inf'))
    out = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)
    return F.linear(out, out_w, out_b)


def classify(embed, classes):
    """Cosine with each class's synonyms (best one), x100; a zero
    background class is appended. classes: [K, P, D]."""
    cos = torch.einsum('bnd,kpd->bnkp', F.normalize(embed, dim=-1), classes)
    scores = cos.max(-1).values * math.exp(4.6052)
    return torch.cat([scores, torch.zeros_like(scores[..., :1])], -1)


def mlp(x, sd, p, n=3):
    for i in range(n):
        x = linear(x, sd, f'{p}.{2 * i}')
        if i < n - 1:
            x = F.relu(x)
    return x


def stage(features, q, masks, sd, p, classes, blocked):
    pooled = torch.einsum('bnhw,bchw->bnc', (masks.sigmoid() > 0.5).float(),
                          features)
    q = kernel_update(pooled, q, sd, p + '.kernel_update')
    q = layer_norm(
        q + attention(q, q, q, sd[p + '.s_atten.in_proj_weight'],
                      sd[p + '.s_atten.in_proj_bias'],
                      sd[p + '.s_atten.out_proj.weight'],
                      sd[p + '.s_atten.out_proj.bias'], 8, blocked), sd,
        p + '.s_atten_norm')
    ffn = linear(
        F.relu(linear(q, sd, p + '.ffn.layers.0.0')), sd, p + '.ffn.layers.1')
    q = layer_norm(q + ffn, sd, p + '.ffn_norm')
    cls_feat = F.relu(
        layer_norm(
            linear(q, sd, p + '.cls_fcs.0', bias=False), sd, p + '.cls_fcs.1'))
    mask_feat = F.relu(
        layer_norm(
            linear(q, sd, p + '.mask_fcs.0', bias=False), sd,
            p + '.mask_fcs.1'))
    scores = classify(mlp(cls_feat, sd, p + '.cls_proj'), classes) / 0.1
    new_masks = torch.einsum('bnc,bchw->bnhw',
                             linear(mask_feat, sd, p + '.fc_mask'), features)
    return scores, new_masks, mlp(mask_feat, sd, p + '.iou_embed'), q


def sine_encoding(boxes):
    """(cx, cy, w, h) in [0, 1] -> 512 numbers, DETR-style, ordered
    y, x, w, h, each 128 = interleaved sin/cos of 64 frequencies."""
    dim_t = 10000**(2 * (torch.arange(128) // 2) / 128)
    parts = []
    for idx in (1, 0, 2, 3):
        v = boxes[..., idx, None] * 2 * math.pi / dim_t
        parts.append(
            torch.stack([v[..., 0::2].sin(), v[..., 1::2].cos()],
                        -1).flatten(-2))
    return torch.cat(parts, -1)


def decode(features, sd, classes, boxes=None, img_hw=None):
    """Head outputs (lists: stages then adapter) for object queries, or for
    prompt boxes [B, N, 4] (x1, y1, x2, y2 in img_hw pixels)."""
    b = features.shape[0]
    h = 'panoptic_head.'
    blocked = None
    if boxes is None:
        q = sd[h + 'kernels.weight'][None].expand(b, -1, -1)
    else:
        ih, iw = img_hw
        x1, y1, x2, y2 = (boxes /
                          boxes.new_tensor([iw, ih, iw, ih])).unbind(-1)
        cxcywh = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1],
                             -1).clamp(1e-5, 1 - 1e-5)
        q = (
            sd[h + 'pb_embedding.weight'][1] +
            sd[h + 'mask_tokens.weight'][0] +
            linear(sine_encoding(cxcywh), sd, h + 'pos_linear'))
        n = boxes.shape[1]
        blocked = ~torch.eye(n, dtype=torch.bool)
    masks = torch.einsum('bnc,bchw->bnhw', q, features)
    all_cls, all_masks, all_ious = [], [], []
    for i in range(3):
        cls, masks, ious, q = stage(features, q, masks, sd,
                                    f'{h}mask_heads.{i}', classes, blocked)
        all_cls.append(cls)
        all_masks.append(masks)
        all_ious.append(ious)
    if boxes is None:
        pooled = torch.einsum('bnhw,bchw->bnc', (masks.sigmoid()
                                                 > 0.5).float(), features)
        q = kernel_update(pooled, q, sd, h + 'panoptic_attn')
        all_cls.append(classify(linear(q, sd, h + 'panoptic_cls.0'), classes))
        all_ious.append(all_ious[-1])
    else:
        keys = features.flatten(2).transpose(1, 2)
        a = h + 'prompt_attn.attn.'
        q = layer_norm(
            q + attention(q, keys, keys, sd[a + 'in_proj_weight'],
                          sd[a + 'in_proj_bias'], sd[a + 'out_proj.weight'],
                          sd[a + 'out_proj.bias'], 8), sd, h + 'prompt_norm')
        all_cls.append(all_cls[-1])
        all_ious.append(linear(q, sd, h + 'prompt_iou'))
    all_masks.append(torch.einsum('bnc,bchw->bnhw', q, features))
    return all_cls, all_masks, all_ious, q


def forward(images, sd, classes, boxes=None, img_hw=None):
    """Normalised, padded images [B, 3, H, W] -> head outputs."""
    return decode(neck(resnet50(images, sd), sd), sd, classes, boxes, img_hw)
