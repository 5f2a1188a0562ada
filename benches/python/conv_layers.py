"""PyTorch's side of `cargo run --release -p polymodal-benches --example
conv_layers`: each convolution shape of a ResNet-18 training step (224x224,
batch 8) alone, forward, input gradient and weight gradient
(`aten.convolution_backward` with one output asked for), milliseconds per
call, median of the runs after a warm-up, on 2 threads.

python benches/python/conv_layers.py [RUNS]
"""

import sys
import time

import torch

# name, (in, out), size, kernel, stride, count: as RESNET18_CONVS in
# benches/src/resnet_step.rs.
CONVS = [
    ("stem 7×7/2 3→64", (3, 64), 224, 7, 2, 1),
    ("layer1 3×3 64", (64, 64), 56, 3, 1, 4),
    ("layer2 3×3/2 64→128", (64, 128), 56, 3, 2, 1),
    ("layer2 3×3 128", (128, 128), 28, 3, 1, 3),
    ("layer2 1×1/2 64→128", (64, 128), 56, 1, 2, 1),
    ("layer3 3×3/2 128→256", (128, 256), 28, 3, 2, 1),
    ("layer3 3×3 256", (256, 256), 14, 3, 1, 3),
    ("layer3 1×1/2 128→256", (128, 256), 28, 1, 2, 1),
    ("layer4 3×3/2 256→512", (256, 512), 14, 3, 2, 1),
    ("layer4 3×3 512", (512, 512), 7, 3, 1, 3),
    ("layer4 1×1/2 256→512", (256, 512), 14, 1, 2, 1),
]


def median_ms(runs, f):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    times = sorted(times[1:])  # the first run is a warm-up
    return times[len(times) // 2]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    torch.set_num_threads(2)
    print("conv                      forward  x grad  w grad  (ms)")
    total = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for name, (cin, cout), size, k, stride, count in CONVS:
            x = torch.randn(8, cin, size, size)
            w = torch.randn(cout, cin, k, k)
            b = torch.zeros(cout)
            pad = k // 2
            y = torch.nn.functional.conv2d(x, w, b, stride, pad)
            dy = torch.randn_like(y)

            def backward(mask):
                torch.ops.aten.convolution_backward(
                    dy, x, w, [cout], [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask
                )

            times = (
                median_ms(runs, lambda: torch.nn.functional.conv2d(x, w, b, stride, pad)),
                median_ms(runs, lambda: backward([True, False, False])),
                median_ms(runs, lambda: backward([False, True, False])),
            )
            total = [t + s * count for t, s in zip(total, times)]
            print(f"{name:<24} {times[0]:>8.2f} {times[1]:>7.2f} {times[2]:>7.2f}  ×{count}")
    print(f"{'total':<24} {total[0]:>8.1f} {total[1]:>7.1f} {total[2]:>7.1f}  (sum over the network)")


if __name__ == "__main__":
    main()
