"""PyTorch's side of `cargo run --release -p polymodal-benches --example
train_step_phases`: a torchvision ResNet-18 training step (224x224, batch 8,
1,000 classes, cross-entropy, torch.optim.Adam) by phase, on 2 threads.

python benches/python/train_step_phases.py [STEPS]
"""

import sys
import time

import torch
import torchvision


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    torch.set_num_threads(2)
    model = torchvision.models.resnet18()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    images = torch.randn(8, 3, 224, 224)
    labels = torch.arange(0, 800, 100)
    loss_fn = torch.nn.CrossEntropyLoss()
    total = [0.0, 0.0, 0.0]
    for step in range(steps):
        start = time.perf_counter()
        loss = loss_fn(model(images), labels)
        forward = time.perf_counter() - start
        optimizer.zero_grad()
        loss.backward()
        backward = time.perf_counter() - start - forward
        optimizer.step()
        adam = time.perf_counter() - start - forward - backward
        if step > 0:  # the first step pays one-off costs
            total = [t + s for t, s in zip(total, (forward, backward, adam))]
    forward, backward, adam = (t / (steps - 1) for t in total)
    print(
        f"PyTorch: forward {forward:.3f} s, backward {backward:.3f} s, Adam {adam:.3f} s, "
        f"step {forward + backward + adam:.3f} s (mean of {steps - 1} steps after a warm-up)"
    )


if __name__ == "__main__":
    main()
