# The small model of the toy recipe (tools/toy_train_eval.py): the RAP-SAM
# architecture at reduced width, so it trains on 2 CPU cores in minutes.
# ResNet-18 at a quarter width (16..128 channels, from scratch), a 64-channel
# neck and head, 30 queries, 64-d class embeddings written by the toy tool
# (seeded per class name, standing in for CLIP text embeddings).
toy_root = 'work_dirs/toy/'
toy_image_size = (128, 128)  # training crops and evaluation scale
toy_model = dict(
    backbone=dict(depth=18, base_channels=16, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=(16, 32, 64, 128), agg_channels=64, out_channels=64),
    panoptic_head=dict(
        # Stage class scores are divided by the temperature (0.1 in the
        # released model: logits of +-1000 whose cross-entropy outweighs
        # the mask losses 100 to 1 in the shared layers); at 1.0 a model
        # trained from scratch learns its masks in far fewer iterations.
        # Predictions use the adapter's scores, which it does not touch.
        temperature=1.0,
        feat_channels=64,
        num_queries=30,
        cls_embed_dims=64,
        ov_classifier_dir=toy_root + 'embd'))
