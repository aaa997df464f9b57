"""Deploying treadle: Kubernetes manifests (``treadle deploy k8s``) and the container
image's install step (``python -m treadle.deploy.dependencies``, run by deploy/Dockerfile).

The manifests are plain kustomize YAML shipped in this package (``k8s/base``,
``k8s/overlays/{dev,prod}``, ``k8s/post-migrate``); :mod:`treadle.deploy.kustomize`
renders them without kubectl and :mod:`treadle.deploy.manifests` applies the command's
parameters.
"""
