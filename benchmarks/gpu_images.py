"""Image inference on an accelerator: Conveyor against a hand-written PyTorch loop.

The job: generated JPEGs, one image per object (SplitType None); `input_fn` decodes and resizes
one image (Pillow) into a normalised tensor; `predict_batch_fn` runs a ResNet-50 with random
weights (bfloat16 on a GPU, float32 on the CPU) on a batch; `output_fn` writes the class.
  hand loop   a `DataLoader` over the files with --decode-workers worker processes and
              --batch-size, the same four functions, one output file per image
  conveyor    `conveyor transform` with the handler's BATCH_SIZE = --batch-size (cross-record
              batching across objects) and --decode-workers (CONVEYOR_DECODE_WORKERS),
              on InstanceType local_gpu: one GPU (the default, `local`, has none)
Each run logs its model calls and where they computed; the figures are over the steady state
(first call's start to the last call's end): images/s, and the fraction of that time the model
was computing. Runs whose models computed on different devices are not compared. The issue's
target on an H100: Conveyor ≥ 0.9 × the hand loop's images/s, the model busy ≥ 90 %.

    .venv/bin/python benchmarks/gpu_images.py --images 5000                       # an H100, about a minute
    .venv/bin/python benchmarks/gpu_images.py --images 8 --size 64 --batch-size 4   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from gpu_calls import same_devices, steady_state

HERE = Path(__file__).resolve().parent

HANDLER = '''
import io, os, time

import numpy as np
import torch
from PIL import Image

import gpu_models

BATCH_SIZE = {batch_size}
BATCH_TIMEOUT = 0.05
SIZE = {size}
CALLS = {calls!r}
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

def model_fn(model_dir):
    torch.manual_seed(0)
    return gpu_models.resnet50().eval().to(gpu_models.device(), gpu_models.dtype())

def input_fn(body, content_type):
    image = Image.open(io.BytesIO(body)).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    array = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(array.transpose(2, 0, 1).copy())

def predict_batch_fn(inputs, model):
    started = time.time()
    batch = torch.stack(inputs).to(gpu_models.device(), gpu_models.dtype(), non_blocking=True)
    with torch.inference_mode():
        classes = model(batch).argmax(dim=1).tolist()  # .tolist() waits for the device
    with open(CALLS, "a") as calls:
        calls.write(f"{{started}} {{time.time()}} {{len(inputs)}} {{batch.device.type}}\\n")
    return classes

def output_fn(prediction, accept):
    return str(prediction)
'''

HAND_LOOP = '''
import importlib.util, os, sys, uuid
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import torch
from torch.utils.data import DataLoader, Dataset

module_spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(module_spec); module_spec.loader.exec_module(handler)
source, target, workers = sys.argv[2], sys.argv[3], int(sys.argv[4])
names = sorted(os.listdir(source))

class Images(Dataset):
    def __len__(self):
        return len(names)
    def __getitem__(self, index):
        with open(os.path.join(source, names[index]), "rb") as image:
            return index, handler.input_fn(image.read(), "application/x-image")

model = handler.model_fn(None)
loader = DataLoader(Images(), batch_size=handler.BATCH_SIZE, num_workers=workers, collate_fn=list, pin_memory=torch.cuda.is_available())
os.makedirs(target, exist_ok=True)
for batch in loader:
    predictions = handler.predict_batch_fn([tensor for _, tensor in batch], model)
    for (index, _), prediction in zip(batch, predictions):
        path = os.path.join(target, names[index] + ".out")
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(temporary, "w") as output:
            output.write(handler.output_fn(prediction, "text/plain"))
        os.replace(temporary, path)
'''


def make_images(folder: Path, count: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    for number in range(count):  # photographs compress worse than noise does well: a shifted base plus noise
        noise = rng.integers(0, 32, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(np.roll(base, number, axis=1) // 2 + noise).save(folder / f"image-{number:06d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=224, help="the side the images are resized to (and generated at)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--decode-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import torch

    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="conveyor-gpu-images-", dir=args.workdir))
    try:
        make_images(work / "images", args.images, args.size)
        print(f"{args.images} JPEGs of {args.size}x{args.size}, batch {args.batch_size}, {args.decode_workers} decode workers, "
              f"torch {torch.__version__} on {device}")  # fmt: skip
        figures = {}
        for name in ("hand loop", "conveyor"):
            code = work / name.replace(" ", "-") / "code"
            code.mkdir(parents=True)
            calls = work / f"{name.replace(' ', '-')}-calls.txt"
            (code / "inference.py").write_text(HANDLER.format(batch_size=args.batch_size, size=args.size, calls=str(calls)))
            shutil.copy(HERE / "gpu_models.py", code / "gpu_models.py")
            output = work / f"{name.replace(' ', '-')}-out"
            if name == "hand loop":
                (work / "hand_loop.py").write_text(textwrap.dedent(HAND_LOOP))
                command = [sys.executable, str(work / "hand_loop.py"), str(code / "inference.py"), str(work / "images"), str(output), str(args.decode_workers)]
            else:
                command = [
                    str(Path(sys.executable).with_name("conveyor")), "transform", "--quiet", "--model", str(code.parent),
                    "--input", str(work / "images"), "--output", str(output), "--content-type", "application/x-image",
                    "--accept", "text/plain", "--decode-workers", str(args.decode_workers), "--instance-type", "local_gpu",
                ]  # fmt: skip
            started = time.perf_counter()
            result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            whole = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr}")
            figures[name] = steady = steady_state(calls)
            assert steady.seen == args.images and len(os.listdir(output)) == args.images, f"{name}: {steady.seen} images predicted"
            print(f"  {name:10} {steady.rate:8.1f} images/s steady, model busy {steady.busy:6.1%} on {steady.devices}; whole run {whole:6.2f} s")
        same_devices(figures)
        print(f"conveyor / hand loop (images/s): {figures['conveyor'].rate / figures['hand loop'].rate:.2f}   target >= 0.9, model busy >= 90%")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
