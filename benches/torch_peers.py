#!/usr/bin/env python3
"""PyTorch peers for the built-ins the shared harness does not define: `lenet5` and `vgg-small`.

The shared harness (`../shared/gpu-check/torch_mnist.py`, or `--harness PATH`) defines the study's
eight networks; this adds LeNet-5 and the VGG-style network exactly as docs/MODELS.md and
models/*.toml build them on MNIST (28x28x1, 10 classes) and then runs the harness unchanged: same
data, timing, warm-up and JSON line. Example:

    python3 benches/torch_peers.py --model lenet5 --device cpu --threads 2 --steps 200
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_HARNESS = os.path.join(HERE, "..", "..", "shared", "gpu-check", "torch_mnist.py")


def load_harness():
    path = DEFAULT_HARNESS
    if "--harness" in sys.argv:
        i = sys.argv.index("--harness")
        path = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    if not os.path.exists(path):
        sys.exit(f"{path}: the shared PyTorch harness is not there (give --harness PATH)")
    spec = importlib.util.spec_from_file_location("torch_mnist", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


h = load_harness()
nn = h.nn


class LeNet5(nn.Module):
    """models/lenet5.toml: conv 5x5 6 "same", tanh, avgpool 2, conv 5x5 16, tanh, avgpool 2, flatten,
    dense 120, tanh, dense 84, tanh, dense 10."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.net(x)


class VggSmall(nn.Module):
    """models/vgg-small.toml on 28x28x1: [conv 3x3 "same" no bias, BN, ReLU] x2 (32), maxpool 2,
    dropout 0.25, the same with 64, flatten (7x7x64), dense 128 no bias, BN, ReLU, dropout 0.5,
    dense 10."""

    def __init__(self):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.net = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(7 * 7 * 64, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.net(x)


EXTRA = {"lenet5": LeNet5, "vgg-small": VggSmall}
_study_build = h.build_model


def build_model(name):
    if name not in EXTRA:
        return _study_build(name)
    model = EXTRA[name]()
    h.init_weights(model)
    return model


h.build_model = build_model
h.MODELS.extend(EXTRA)

if __name__ == "__main__":
    h.main()
