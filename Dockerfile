# The speechgraph image for k8s/: Ray's own GPU image, of the Ray and Python versions the project
# pins (ray[serve] 2.60, Python 3.11), with the project and its vllm extra installed. Every pod
# (head, CPU and GPU workers) runs it; Serve imports deployments.app:build_app from it.
# Not built in this repository's CI (no container engine there).
#   docker build -t speechgraph:0.1.0 .
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /home/ray/speechgraph
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users pipeline ./pipeline
COPY --chown=ray:users deployments ./deployments
COPY --chown=ray:users configs ./configs
COPY --chown=ray:users serve_config.yaml ./
# vllm brings the CUDA build of torch it was compiled against; the project's own torch range
# accepts it.
RUN pip install --no-cache-dir ".[vllm]"
