# Your agents' code as a layer on the taskplane image (the example: this repository's
# examples/, served by deploy/k8s's worker Deployment):
#   podman build -f deploy/Dockerfile -t localhost/taskplane:dev .
#   podman build -f deploy/agents.Dockerfile --build-arg TASKPLANE_IMAGE=localhost/taskplane:dev \
#       -t localhost/taskplane-agents:dev .
# Then: taskplane worker run --system document-pipeline --module /agents/examples/document-pipeline/tools.py
ARG TASKPLANE_IMAGE=ghcr.io/taskplane/taskplane:0.1.0
FROM ${TASKPLANE_IMAGE}
# Your tools' own dependencies go here, into the image's venv:
#   USER root
#   RUN pip install --no-cache-dir -r /agents/requirements.txt
#   USER 10001:10001
COPY --chown=10001:10001 examples /agents/examples
# Tools import their package (examples._db ...): put its parent on the path.
ENV PYTHONPATH=/agents
