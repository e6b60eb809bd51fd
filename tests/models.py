"""Model directories with small `code/inference.py` handlers, written for the tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

# Wraps each request body in <…>, so tests see exactly how records were batched.
BRACKET = '''
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()  # text types arrive decoded, as in the toolkit
    return b"<" + body + b">"
'''

# Upper-cases the body; fails every attempt for bodies containing "bad".
FAIL_ON_BAD = '''
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    if b"bad" in body:
        raise ValueError("cannot score a bad record")
    return body.upper()
'''

# Answers each single record after a random delay: order must still be kept.
JITTER = '''
import random
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    time.sleep(random.random() * 0.004)
    return body + b"!"
'''

# One CSV prediction line per input line: the number of fields.
FIELD_COUNT = '''
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    lines = (body.decode() if isinstance(body, bytes) else body).splitlines()
    return "".join(f"{len(line.split(','))}\\n" for line in lines).encode()
'''


def slow_on_slow(seconds: float) -> str:
    """A handler that answers with its input, `seconds` late for bodies containing "slow"."""
    return f'''
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body if isinstance(body, bytes) else body.encode()
    if b"slow" in body:
        time.sleep({seconds!r})
    return body
'''


def sleepy(seconds: float) -> str:
    """A handler that answers each request with its input after `seconds`: a job that runs a while."""
    return f'''
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep({seconds!r})
    return body
'''


# Sleeps past any short timeout for bodies containing "slow".
SLOW_ON_SLOW = slow_on_slow(30)


def write_model(root: Path, handler: str, name: str = "model") -> Path:
    model_dir = root / name
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(textwrap.dedent(handler))
    return model_dir
