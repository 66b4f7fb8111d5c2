# Solutions of notebook 03_backbones_feature_pyramid (tools/exercises.py writes the student cells from this file).
# Each "# %% [exercise] ID" block is the full solved source of one exercise cell; the parts between
# "### BEGIN SOLUTION" and "### END SOLUTION" are what the student writes.

# %% [exercise] densenet-backbone
class DenseNetBackbone(Backbone):
    """A torchvision DenseNet cut into levels L0-L5 (§3.1, the table above).

    self.stem0: C0, a new 3x3 convolution from the 3 input channels to C0_CHANNELS = 32, + BN + ReLU (conv_bn_relu).
    self.features: torchvision's `features` module itself, so that its weights keep their names.
    forward(images (B, 3, H, W)) -> [L0, ..., L5], Ll of shape (B, channels[l], H / 2**l, W / 2**l).
    """

    def __init__(self, name, net):
        f = net.features
        channels = (C0_CHANNELS, f.conv0.out_channels, f.transition1.conv.in_channels,
                    f.transition2.conv.in_channels, f.transition3.conv.in_channels, f.norm5.num_features)
        super().__init__(name, channels)               # the kit's Backbone keeps name, channels and strides
        ### BEGIN SOLUTION: two attributes, self.stem0 (C0) and self.features
        self.stem0 = conv_bn_relu(3, C0_CHANNELS, kernel_size=3)
        self.features = f
        ### END SOLUTION

    def forward(self, images):
        f = self.features
        ### BEGIN SOLUTION: l0 ... l5 as in the table: transitions between, norm5 last
        l0 = self.stem0(images)                                # (B, 32, H, W)
        l1 = f.conv0(images)                                   # (B, 64, H/2, W/2), before norm0
        l2 = f.denseblock1(f.pool0(f.relu0(f.norm0(l1))))      # (B, 256, H/4, W/4)
        l3 = f.denseblock2(f.transition1(l2))                  # (B, 512, H/8, W/8)
        l4 = f.denseblock3(f.transition2(l3))                  # (B, 1024, H/16, W/16)
        l5 = f.norm5(f.denseblock4(f.transition3(l4)))         # (B, 1024, H/32, W/32), no ReLU
        ### END SOLUTION
        return [l0, l1, l2, l3, l4, l5]


# %% [exercise] classifier-parameters
def classifier_parameters():
    """{name: number of parameters of the classifier the kit drops}, counted by hand, for vgg16, resnet101 and
    densenet121."""
    ### BEGIN SOLUTION
    return {
        "vgg16": (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000),
        "resnet101": 2048 * 1000 + 1000,                 # one fully connected layer from L5's 2048 channels
        "densenet121": 1024 * 1000 + 1000,               # from norm5's 1024 channels
    }
    ### END SOLUTION
