"""Text inference on an accelerator: Conveyor against a hand-written PyTorch loop.

The job: generated sentences as JSON Lines (SplitType Line, SingleRecord: one sentence per
invocation); `input_fn` parses the JSON and tokenises with a vocabulary the script generates
(nothing can be downloaded); `predict_batch_fn` runs a BERT-base-sized encoder with random
weights (bfloat16 on a GPU) on a batch and mean-pools it; `output_fn` writes two of the pooled
values as JSON.
  hand loop   a `DataLoader` over the lines with --decode-workers worker processes and
              --batch-size, the same four functions, one output file
  conveyor    `conveyor transform` with the handler's BATCH_SIZE = --batch-size (cross-record
              batching) and --decode-workers (CONVEYOR_DECODE_WORKERS),
              on InstanceType local_gpu: one GPU (the default, `local`, has none)
Each run logs its model calls and where they computed; the figures are over the steady state
(first call's start to the last call's end): sentences/s, and the fraction of that time the model
was computing. Runs whose models computed on different devices are not compared. The issue's
target on an H100: Conveyor ≥ 0.9 × the hand loop's sentences/s, the model busy ≥ 90 %.

    .venv/bin/python benchmarks/gpu_text.py --sentences 200000               # an H100, about a minute
    .venv/bin/python benchmarks/gpu_text.py --sentences 16 --layers 1 --hidden 64 --heads 2 --batch-size 4   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from gpu_calls import same_devices, steady_state

HERE = Path(__file__).resolve().parent

HANDLER = '''
import json, time

import torch

import gpu_models

BATCH_SIZE = {batch_size}
BATCH_TIMEOUT = 0.05
CALLS = {calls!r}
WORDS = gpu_models.vocabulary()

def model_fn(model_dir):
    torch.manual_seed(0)
    encoder = gpu_models.Encoder(layers={layers}, hidden={hidden}, heads={heads})
    return encoder.eval().to(gpu_models.device(), gpu_models.dtype())

def input_fn(body, content_type):
    return gpu_models.tokenize(json.loads(body)["text"], WORDS)

def predict_batch_fn(inputs, model):
    started = time.time()
    ids = torch.stack(inputs).to(gpu_models.device(), non_blocking=True)
    with torch.inference_mode():
        pooled = model(ids)[:, :2].float().tolist()  # .tolist() waits for the device
    with open(CALLS, "a") as calls:
        calls.write(f"{{started}} {{time.time()}} {{len(inputs)}} {{ids.device.type}}\\n")
    return pooled

def output_fn(prediction, accept):
    return json.dumps([round(value, 4) for value in prediction])
'''

HAND_LOOP = '''
import importlib.util, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import torch
from torch.utils.data import DataLoader, Dataset

module_spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
handler = importlib.util.module_from_spec(module_spec); module_spec.loader.exec_module(handler)
source, target, workers = sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(source, "rb") as lines:
    sentences = lines.read().splitlines()

class Sentences(Dataset):
    def __len__(self):
        return len(sentences)
    def __getitem__(self, index):
        return handler.input_fn(sentences[index].decode(), "application/jsonlines")

model = handler.model_fn(None)
loader = DataLoader(Sentences(), batch_size=handler.BATCH_SIZE, num_workers=workers, collate_fn=list, pin_memory=torch.cuda.is_available())
os.makedirs(target, exist_ok=True)
with open(os.path.join(target, "sentences.jsonl.out"), "w") as output:
    for batch in loader:
        for prediction in handler.predict_batch_fn(batch, model):
            output.write(handler.output_fn(prediction, "application/json") + "\\n")
'''


def make_sentences(path: Path, count: int) -> None:
    sys.path.insert(0, str(HERE))
    from gpu_models import vocabulary

    words = list(vocabulary())
    rng = random.Random(0)
    with open(path, "w") as out:
        for _ in range(count):
            out.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(8, 120)))}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--decode-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import torch

    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="conveyor-gpu-text-", dir=args.workdir))
    try:
        source = work / "sentences" / "sentences.jsonl"
        source.parent.mkdir()
        make_sentences(source, args.sentences)
        print(f"{args.sentences} sentences, encoder {args.layers}x{args.hidden} ({args.heads} heads), batch {args.batch_size}, "
              f"{args.decode_workers} decode workers, torch {torch.__version__} on {device}")  # fmt: skip
        figures = {}
        for name in ("hand loop", "conveyor"):
            code = work / name.replace(" ", "-") / "code"
            code.mkdir(parents=True)
            calls = work / f"{name.replace(' ', '-')}-calls.txt"
            handler = HANDLER.format(batch_size=args.batch_size, calls=str(calls), layers=args.layers, hidden=args.hidden, heads=args.heads)
            (code / "inference.py").write_text(handler)
            shutil.copy(HERE / "gpu_models.py", code / "gpu_models.py")
            output = work / f"{name.replace(' ', '-')}-out"
            if name == "hand loop":
                (work / "hand_loop.py").write_text(textwrap.dedent(HAND_LOOP))
                command = [sys.executable, str(work / "hand_loop.py"), str(code / "inference.py"), str(source), str(output), str(args.decode_workers)]
            else:
                command = [
                    str(Path(sys.executable).with_name("conveyor")), "transform", "--quiet", "--model", str(code.parent),
                    "--input", str(source), "--output", str(output), "--content-type", "application/jsonlines",
                    "--accept", "application/json", "--split-type", "Line", "--strategy", "SingleRecord", "--assemble-with", "Line",
                    "--decode-workers", str(args.decode_workers), "--instance-type", "local_gpu",
                ]  # fmt: skip
            started = time.perf_counter()
            result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            whole = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr}")
            figures[name] = steady = steady_state(calls)
            written = sum(1 for _ in open(output / "sentences.jsonl.out"))
            assert steady.seen == args.sentences and written == args.sentences, f"{name}: {steady.seen} predicted, {written} written"
            print(f"  {name:10} {steady.rate:9.1f} sentences/s steady, model busy {steady.busy:6.1%} on {steady.devices}; whole run {whole:6.2f} s")
        same_devices(figures)
        print(f"conveyor / hand loop (sentences/s): {figures['conveyor'].rate / figures['hand loop'].rate:.2f}   target >= 0.9, model busy >= 90%")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
