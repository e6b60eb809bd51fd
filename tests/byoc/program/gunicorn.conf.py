# gunicorn settings of the inference server (AWS's example puts nginx in front; here gunicorn
# listens on SageMaker's port itself).
import multiprocessing
import os

bind = f"{os.environ.get('MODEL_SERVER_HOST', '0.0.0.0')}:{os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080')}"
workers = int(os.environ.get("MODEL_SERVER_WORKERS") or multiprocessing.cpu_count())
timeout = int(os.environ.get("MODEL_SERVER_TIMEOUT") or 60)
worker_class = "sync"
graceful_timeout = 5
control_socket_disable = True  # gunicorn 25+: no $HOME/.gunicorn/gunicorn.ctl shared by every server on the machine
